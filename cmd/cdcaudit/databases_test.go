package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// run with databases: the resolved list printed without passwords; the
// settings of one application's files refused with several databases; a
// data_dir that holds a single dsn's store refused.
func TestRunDatabasesConfig(t *testing.T) {
	const two = "databases:\n  - dsn: postgres://cdcaudit:s3cret@db:5432/erp_a\n  - dsn: postgres://cdcaudit:s3cret@db:5432/erp_b\n    slot: b\n"
	dataDir := t.TempDir()
	file := writeConfig(t, "data_dir: "+dataDir+"\n"+two)
	got := printConfig(t, nil, "--config", file)
	if want := "source=erp_a dsn=postgres://cdcaudit@db:5432/erp_a slot=cdcaudit_erp_a publication=cdcaudit data_dir=" +
		filepath.Join(dataDir, "erp_a") + " (" + file + ":3)"; got["databases[0]"] != want {
		t.Errorf("databases[0] = %q, want %q", got["databases[0]"], want)
	}
	if !strings.HasPrefix(got["databases[1]"], "source=erp_b dsn=postgres://cdcaudit@db:5432/erp_b slot=b ") {
		t.Errorf("databases[1] = %q", got["databases[1]"])
	}
	out, _, _ := runCLI(t, nil, "run", "--print-config", "--config", file)
	if strings.Contains(out, "s3cret") {
		t.Errorf("--print-config shows a password:\n%s", out)
	}

	_, errOut, code := runCLI(t, nil, "run", "--config", file, "--session-store", t.TempDir())
	if code != exitUsage || !strings.Contains(errOut, "session_store: the session directory is one Odoo's, and databases lists 2: run one cdcaudit per database to use it (from --session-store)") ||
		strings.Contains(errOut, "s3cret") {
		t.Errorf("session_store with two databases: exit %d %s", code, errOut)
	}
	_, errOut, code = runCLI(t, nil, "run", "--config", file, "--dsn", "postgres://u:pw@h/x")
	if code != exitUsage || !strings.Contains(errOut, "give either dsn or databases, not both") {
		t.Errorf("dsn and databases: exit %d %s", code, errOut)
	}

	// A data_dir holding a store of its own (a single dsn's).
	held := makeStore(t, 1)
	_, errOut, code = runCLI(t, nil, "run", "--config", file, "--data-dir", held, "--http-addr", "127.0.0.1:0")
	if code != exitFail || !strings.Contains(errOut, "holds the store of a single dsn, and with databases each database's store is in "+filepath.Join(held, "<source>")) {
		t.Errorf("databases over a single dsn's store: exit %d %s", code, errOut)
	}

	// sessions end without a daemon acts on the database whose store
	// --data-dir is: none at data_dir itself.
	_, errOut, code = runCLI(t, nil, "sessions", "end", "s123", "--config", file)
	if code != exitUsage || !strings.Contains(errOut, "--data-dir names one database's store, <data_dir>/<source>: "+dataDir+" is none") {
		t.Errorf("sessions end on data_dir: exit %d %s", code, errOut)
	}
}
