// Command odoolab drives a real Odoo 18.0 (the lab of scripts/odoo-lab) like
// browsers do and turns what PostgreSQL logged into the traces of
// testdata/odoo18/traces. It is a recording tool, run by hand:
//
//	go run ./internal/odoolab drive   -url http://127.0.0.1:18069 -sessions /work/odoo-lab/data/sessions -out /work/odoo-lab/run
//	go run ./internal/odoolab extract -pglog /work/odoo-lab/pg/log/pg.json -odoolog /work/odoo-lab/home/odoo.log -run /work/odoo-lab/run -out testdata/odoo18
//
// scripts/odoo-lab/record.sh runs both around a fresh install.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// mark is when a scenario started, in the lab's clock (UTC).
type mark struct {
	Scenario string    `json:"scenario"`
	Start    time.Time `json:"start"`
}

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "drive":
		err = driveCmd(os.Args[2:])
	case "extract":
		err = extractCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		log.Fatal("odoolab: ", err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: odoolab drive|extract [flags]   (see -h of each)")
	os.Exit(2)
}

func driveCmd(args []string) error {
	fs := flag.NewFlagSet("drive", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:18069", "Odoo's base URL (loopback)")
	sessions := fs.String("sessions", "/work/odoo-lab/data/sessions", "Odoo's session directory (data_dir/sessions)")
	out := fs.String("out", "/work/odoo-lab/run", "directory for marks.json and the session listings")
	psql := fs.String("psql", "bash scripts/odoo-lab/lab.sh psql", "command running psql as the odoo role on erp (scenario rawsql)")
	fs.Parse(args)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	d := newDriver(*url, strings.Fields(*psql))
	var marks []mark
	for _, s := range scenarios {
		// A pause on each side keeps the scenarios' transactions apart in time.
		time.Sleep(300 * time.Millisecond)
		if err := store.start(*sessions); err != nil {
			return err
		}
		marks = append(marks, mark{s.name, time.Now().UTC()})
		log.Printf("scenario %s", s.name)
		if err := s.run(d); err != nil {
			return fmt.Errorf("scenario %s: %w", s.name, err)
		}
		time.Sleep(300 * time.Millisecond)
		listing := "# " + s.name + ": each step of the scenario, then what it did to data_dir/sessions\n" +
			"# (file names cut to 8 characters: the sid's and res_device_log.session_identifier's prefix)\n" + store.listing.String()
		if err := os.WriteFile(filepath.Join(*out, "sessions-"+s.name+".txt"), []byte(listing), 0o644); err != nil {
			return err
		}
	}
	marks = append(marks, mark{"end", time.Now().UTC()})
	b, _ := json.MarshalIndent(marks, "", "  ")
	return os.WriteFile(filepath.Join(*out, "marks.json"), b, 0o644)
}
