package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/sink"
)

const day = 24 * time.Hour

func TestRetentionKey(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil || !c.Retention.IsZero() {
		t.Fatalf("default: %v %+v", err, c.Retention)
	}
	file := writeFile(t, "retention:\n  default: 400d\n  public.account_move*: 10y\n  mail_message: 12w\n  res_partner: forever\n")
	c, err = load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := sink.Retention{Default: 400 * day, Tables: []sink.TableRetention{
		{Glob: "public.account_move*", Keep: 3650 * day}, {Glob: "mail_message", Keep: 84 * day}, {Glob: "res_partner", Keep: 0},
	}}
	if !reflect.DeepEqual(c.Retention, want) {
		t.Fatalf("file: %+v", c.Retention)
	}
	if got := c.Retention.String(); got != "default=400d,public.account_move*=10y,mail_message=12w,res_partner=forever" {
		t.Fatalf("String: %s", got)
	}
	// What String writes, the flag reads.
	c2, err := load(t, []string{"--retention", c.Retention.String()}, nil)
	if err != nil || !reflect.DeepEqual(c2.Retention, want) || c2.Sources[KeyRetention] != "--retention" {
		t.Fatalf("flag: %v %+v", err, c2.Retention)
	}
	c, err = load(t, []string{"--config", writeFile(t, "retention: 36h\n")}, map[string]string{"CDCAUDIT_RETENTION": "30s"})
	if err != nil || c.Retention.Default != 30*time.Second || len(c.Retention.Tables) != 0 || c.Sources[KeyRetention] != "CDCAUDIT_RETENTION" {
		t.Fatalf("env over file: %v %+v", err, c.Retention)
	}
	c, err = load(t, []string{"--config", writeFile(t, "retention: 36h\n")}, nil)
	if err != nil || c.Retention.Default != 36*time.Hour {
		t.Fatalf("scalar: %v %+v", err, c.Retention)
	}
	wantLoadErrors(t, []errorCase{
		{name: "months", args: []string{"--retention", "6m"}, want: []string{`config: retention: default: "6m": m is ambiguous (minutes or months?): use h or d (from --retention)`}},
		{name: "no unit", env: map[string]string{"CDCAUDIT_RETENTION": "400"}, want: []string{`config: retention: default: "400" is not a window`, "(from CDCAUDIT_RETENTION)"}},
		{name: "zero", args: []string{"--retention", "0d"}, want: []string{`"0d" is out of range`}},
		{name: "too long", args: []string{"--retention", "300y"}, want: []string{`"300y" is out of range`}},
		{name: "bad glob", file: "retention:\n  public.[x: 1y\n", want: []string{`config: retention: line 2: "public.[x": malformed glob`, "cdcaudit.yml:1"}},
		{name: "bad window in file", file: "retention:\n  default: 400 days\n", want: []string{`config: retention: line 2: default: "400 days" is not a window`}},
		{name: "twice", file: "retention:\n  default: 1y\n  default: 2y\n", want: []string{`default is given twice`}},
		{name: "list", file: "retention: [1y]\n", want: []string{`config: retention: want a window (400d) or a mapping`}},
		{name: "three parts", args: []string{"--retention", "a.b.c=1d"}, want: []string{`"a.b.c" is not a table glob`}},
		{name: "unit", args: []string{"--retention", "3q"}, want: []string{`unknown unit "q"`}},
	})
}
