package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestDatabases(t *testing.T) {
	file := writeFile(t, `
data_dir: /var/lib/cdcaudit
slot: audit
publication: pub
databases:
  - dsn: postgres://cdcaudit:s3cret@db:5432/erp_a
  - dsn: postgres://cdcaudit:s3cret@db:5432/erp-b.2
  - dsn: postgres://cdcaudit:s3cret@db:5432/other
    source: Sales
    slot: sales_slot
    publication: sales_pub
`)
	c, err := load(t, []string{"--config", file}, nil, KeyDSN, KeyDataDir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Database{
		{DSN: "postgres://cdcaudit:s3cret@db:5432/erp_a", Source: "erp_a", Slot: "audit_erp_a", Publication: "pub", DataDir: "/var/lib/cdcaudit/erp_a"},
		{DSN: "postgres://cdcaudit:s3cret@db:5432/erp-b.2", Source: "erp-b.2", Slot: "audit_erp_b_2", Publication: "pub", DataDir: "/var/lib/cdcaudit/erp-b.2"},
		{DSN: "postgres://cdcaudit:s3cret@db:5432/other", Source: "Sales", Slot: "sales_slot", Publication: "sales_pub", DataDir: "/var/lib/cdcaudit/Sales"},
	}
	if got := c.Databases(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Databases:\n got %+v\nwant %+v", got, want)
	}
	d := strings.Join(c.Describe(), "\n")
	if strings.Contains(d, "s3cret") {
		t.Errorf("Describe shows a password:\n%s", d)
	}
	if !strings.Contains(d, "databases[1]=source=erp-b.2 dsn=postgres://cdcaudit@db:5432/erp-b.2 slot=audit_erp_b_2 publication=pub data_dir=/var/lib/cdcaudit/erp-b.2 ("+file+":7)") {
		t.Errorf("Describe lacks databases[1]:\n%s", d)
	}

	// The single dsn: one database, its store in data_dir itself.
	c, err = load(t, []string{"--dsn", "postgres://u:pw@h/erp", "--data-dir", "/d", "--slot", "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Databases(), []Database{{DSN: "postgres://u:pw@h/erp", Source: "erp", Slot: "s", Publication: "cdcaudit", DataDir: "/d"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Databases of dsn:\n got %+v\nwant %+v", got, want)
	}
	if c.DatabaseList != nil {
		t.Errorf("DatabaseList without databases: %+v", c.DatabaseList)
	}

	// One item of databases: its own directory too, and the features of
	// one application's files are allowed.
	file = writeFile(t, `
data_dir: /d
session_store: /var/lib/odoo/sessions
databases:
  - {dsn: "postgres://u@h/erp"}
`)
	c, err = load(t, []string{"--config", file}, nil, KeyDSN, KeyDataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Databases(); len(got) != 1 || got[0].DataDir != "/d/erp" || got[0].Slot != "cdcaudit_erp" {
		t.Fatalf("one item: %+v", got)
	}
}

func TestDatabasesErrors(t *testing.T) {
	const two = `
databases:
  - dsn: postgres://u:pw@h/erp_a
  - dsn: postgres://u:pw@h/erp_b
`
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		args       []string
		want       string
	}{
		{"both", two, nil, []string{"--dsn", "postgres://u:pw@h/x"},
			"config: databases: give either dsn or databases, not both (dsn from --dsn, databases from FILE:2)"},
		{"top-level source", two, nil, []string{"--source", "x"},
			"config: source: with databases each one names its source (databases[N].source), not the top-level source (from --source)"},
		{"variable", "", map[string]string{"CDCAUDIT_DATABASES": "x"}, nil,
			"config: CDCAUDIT_DATABASES: databases is a list set in the --config file only"},
		{"not a list", "databases: postgres://h/x\n", nil, nil,
			"config: databases: want a list of databases, each a mapping {dsn: URL, source: NAME, slot: NAME, publication: NAME} (only dsn is required) (from FILE:1)"},
		{"empty list", "databases: []\n", nil, nil,
			"config: databases: want a list of databases"},
		{"null", "databases:\n", nil, nil,
			"config: databases: want a list of databases"},
		{"item not a mapping", "databases:\n  - postgres://h/x\n", nil, nil,
			"config: databases[0]: want a mapping {dsn: URL, source: NAME, slot: NAME, publication: NAME} (from FILE:2)"},
		{"unknown field", "databases:\n  - dsn: postgres://h/x\n    dns: y\n", nil, nil,
			`config: databases[0]: unknown field "dns" (want dsn, source, slot, publication) (from FILE:3)`},
		{"field twice", "databases:\n  - dsn: postgres://h/x\n    dsn: postgres://h/y\n", nil, nil,
			"config: databases[0].dsn: given twice (from FILE:3)"},
		{"null field", "databases:\n  - dsn: postgres://h/x\n    slot:\n", nil, nil,
			"config: databases[0].slot: want a single value (from FILE:3)"},
		{"list field", "databases:\n  - dsn: [a, b]\n", nil, nil,
			"config: databases[0].dsn: want a single value (from FILE:2)"},
		{"no dsn", "databases:\n  - dsn: postgres://h/x\n  - source: y\n", nil, nil,
			"config: databases[1].dsn: required: the database's connection URL (from FILE:3)"},
		{"bad dsn", "databases:\n  - dsn: postgres://h/x\n  - dsn: 'postgres://u:hunter2@h:notaport/x'\n", nil, nil,
			"config: databases[1].dsn: cannot parse the connection string"},
		{"bad source", "databases:\n  - dsn: postgres://h/x\n    source: -x\n", nil, nil,
			`config: databases[0].source: "-x" is not a source name`},
		{"default source not a name", "databases:\n  - dsn: postgres://h/x\n  - dsn: 'postgres://h/my%20db'\n", nil, nil,
			"config: databases[1].source: the database name does not make a source name"},
		{"same source", "databases:\n  - dsn: postgres://h/erp\n  - dsn: postgres://other/erp\n", nil, nil,
			`config: databases[1].source: "erp" is also databases[0]'s: each database needs a source of its own (set source) (from FILE:3)`},
		{"same slot", "databases:\n  - dsn: postgres://h/a\n    slot: s\n  - dsn: postgres://h/b\n    slot: s\n", nil, nil,
			`config: databases[1].slot: "s" is also databases[0]'s: each database needs a slot of its own (from FILE:4)`},
		{"default slot collides", "databases:\n  - dsn: postgres://h/a.b\n  - dsn: postgres://h/a-b\n", nil, nil,
			`config: databases[1].slot: "cdcaudit_a_b" is also databases[0]'s`},
		{"default slot too long", "databases:\n  - dsn: postgres://h/" + strings.Repeat("x", 60) + "\n", nil, nil,
			"config: databases[0].slot: the default, slot_<source>, is not a slot name: "},
		{"bad slot", "databases:\n  - dsn: postgres://h/a\n    slot: Big\n", nil, nil,
			`config: databases[0].slot: "Big": replication slot names may contain only lower-case letters, digits and underscores (from FILE:2)`},
		{"bad publication", "databases:\n  - dsn: postgres://h/a\n    publication: " + strings.Repeat("p", 70) + "\n", nil, nil,
			"config: databases[0].publication: "},
		{"session_store", two + "session_store: /var/lib/odoo/sessions\n", nil, nil,
			"config: session_store: the session directory is one Odoo's, and databases lists 2: run one cdcaudit per database to use it (from FILE:5)"},
		{"app_log", two, map[string]string{"CDCAUDIT_APP_LOG": "/var/log/odoo.log"}, nil,
			"config: app_log: the log file is one Odoo's, and databases lists 2: run one cdcaudit per database to use it (from CDCAUDIT_APP_LOG)"},
		{"session_end_webhook", two + "webhook_secret_file: /k\n", nil, []string{"--session-end-webhook", "https://erp.example/end"},
			"config: session_end_webhook: the webhook's request does not say which database the session is of, and databases lists 2: run one cdcaudit per database to use it (from --session-end-webhook)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var file string
			args := tc.args
			if tc.yaml != "" {
				file = writeFile(t, tc.yaml)
				args = append([]string{"--config", file}, args...)
			}
			_, err := load(t, args, tc.env)
			want := strings.ReplaceAll(tc.want, "FILE", file)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("got  %v\nwant %s…", err, want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), ":pw@") {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
}

// dsn is required unless databases gives the DSNs.
func TestDatabasesSatisfyDSN(t *testing.T) {
	file := writeFile(t, "data_dir: /d\ndatabases:\n  - dsn: postgres://h/a\n")
	if _, err := load(t, []string{"--config", file}, nil, KeyDSN, KeyDataDir); err != nil {
		t.Fatal(err)
	}
	_, err := load(t, []string{"--data-dir", "/d"}, nil, KeyDSN, KeyDataDir)
	if err == nil || !strings.Contains(err.Error(), "dsn is required") {
		t.Fatalf("neither dsn nor databases: %v", err)
	}
}

// A command given one store of a daemon on several databases finds its
// database by the store's directory.
func TestDatabaseAt(t *testing.T) {
	file := writeFile(t, "data_dir: /d\ndatabases:\n  - dsn: postgres://u@h/a\n  - dsn: postgres://u@h/b\n    slot: sb\n")
	c, err := load(t, []string{"--config", file, "--data-dir", "/d/b/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dc, ok := c.DatabaseAt(c.DataDir)
	if !ok || dc.DSN != "postgres://u@h/b" || dc.Slot != "sb" || dc.Source != "b" || dc.DataDir != "/d/b/" || dc.Databases()[0].Source != "b" {
		t.Fatalf("DatabaseAt(/d/b/) = %+v, %v", dc, ok)
	}
	if _, ok := c.DatabaseAt("/d"); ok {
		t.Error("DatabaseAt(data_dir) found a database")
	}
	one, _ := load(t, []string{"--dsn", "postgres://u@h/x", "--data-dir", "/x"}, nil)
	if dc, ok := one.DatabaseAt("/x"); !ok || dc != one {
		t.Error("without databases DatabaseAt is not the configuration itself")
	}
}
