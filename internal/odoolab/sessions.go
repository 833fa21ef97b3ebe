package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// sessionFile is what the listing keeps of one file of Odoo's session store.
type sessionFile struct {
	sum   [32]byte
	login string // the session's login, "-" before one
}

// snapshotSessions reads Odoo's filesystem session store
// (data_dir/sessions/<sid[:2]>/<sid>). Keys are the file names cut to 8
// characters: the prefix of the sid and of res_device_log.session_identifier,
// enough to follow a session through a scenario without keeping a credential.
func snapshotSessions(dir string) (map[string]sessionFile, error) {
	out := map[string]sessionFile{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == dir {
				return filepath.SkipDir
			}
			return err
		}
		if e.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var content struct {
			Login *string `json:"login"`
		}
		login := "-"
		if json.Unmarshal(b, &content) == nil && content.Login != nil {
			login = *content.Login
		}
		name := e.Name()
		if len(name) > 8 {
			name = name[:8]
		}
		out[name] = sessionFile{sum: sha256.Sum256(b), login: login}
		return nil
	})
	return out, err
}

// diffSessions lists what a scenario did to the session store.
func diffSessions(before, after map[string]sessionFile) string {
	var lines []string
	for k, a := range after {
		b, ok := before[k]
		switch {
		case !ok:
			lines = append(lines, fmt.Sprintf("  created   %s… login=%s", k, a.login))
		case b.sum != a.sum:
			lines = append(lines, fmt.Sprintf("  rewritten %s… login=%s (was %s)", k, a.login, b.login))
		}
	}
	for k, b := range before {
		if _, ok := after[k]; !ok {
			lines = append(lines, fmt.Sprintf("  removed   %s… login=%s", k, b.login))
		}
	}
	if len(lines) == 0 {
		return ""
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// sessionStore follows Odoo's session directory step by step.
type sessionStore struct {
	dir     string
	last    map[string]sessionFile
	listing strings.Builder
}

var store = &sessionStore{}

func (s *sessionStore) start(dir string) error {
	s.dir = dir
	s.listing.Reset()
	var err error
	s.last, err = snapshotSessions(dir)
	return err
}

// note records a step and the session files it created, rewrote or removed.
func (s *sessionStore) note(step string) {
	if s.dir == "" {
		return
	}
	now, err := snapshotSessions(s.dir)
	if err != nil {
		log.Printf("session store: %v", err)
		return
	}
	if diff := diffSessions(s.last, now); diff != "" {
		fmt.Fprintf(&s.listing, "%s\n%s", step, diff)
	} else {
		fmt.Fprintf(&s.listing, "%s\n  (no change)\n", step)
	}
	s.last = now
}
