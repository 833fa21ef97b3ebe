package odootrace

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Restore loads a pg_dump (plain SQL, optionally gzipped: erp.sql.gz) into
// the database at dsn with psql from binDir (pg_dump's COPY blocks need psql).
func Restore(ctx context.Context, binDir, dsn, dumpPath string) error {
	f, err := os.Open(dumpPath)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", dumpPath, err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", os.DevNull, "-d", dsn)
	cmd.Stdin = zr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restore %s: %w: %s", dumpPath, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// LoadDir reads every trace of a directory (testdata/odoo18/traces), in the
// order they must be replayed (Header.Seq).
func LoadDir(dir string) ([]*Trace, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl*"))
	if err != nil {
		return nil, err
	}
	var out []*Trace
	for _, n := range names {
		tr, err := ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Header.Seq < out[j].Header.Seq })
	return out, nil
}
