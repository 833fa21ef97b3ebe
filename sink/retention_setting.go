package sink

import (
	"fmt"
	"path"
	"strings"
)

// ParseRetention reads the retention setting's text form: "400d" (the
// default window), or comma-separated "default=400d" and "glob=window"
// items, first match wins.
func ParseRetention(s string) (Retention, error) {
	var r Retention
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		name, win, ok := strings.Cut(item, "=")
		if !ok {
			name, win = "default", item
		}
		if err := r.AddWindow(strings.TrimSpace(name), win); err != nil {
			return Retention{}, err
		}
	}
	return r, nil
}

// AddWindow sets the default window (name "default") or appends the window
// of a table glob ("table" or "schema.table", MatchTable's forms), given
// once each.
func (r *Retention) AddWindow(name, window string) error {
	d, err := ParseWindow(window)
	if err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	if name == "default" {
		r.Default = d
		return nil
	}
	if name == "" || strings.Count(name, ".") > 1 {
		return fmt.Errorf("%q is not a table glob (want table or schema.table, e.g. public.account_move*)", name)
	}
	if _, err := path.Match(name, ""); err != nil {
		return fmt.Errorf("%q: malformed glob", name)
	}
	for _, t := range r.Tables {
		if t.Glob == name {
			return fmt.Errorf("%q is given twice", name)
		}
	}
	r.Tables = append(r.Tables, TableRetention{Glob: name, Keep: d})
	return nil
}

// IsZero reports whether no window is set: everything is kept forever.
func (r Retention) IsZero() bool { return r.Default == 0 && len(r.Tables) == 0 }

// String writes the windows in ParseRetention's form ("" when none is set).
func (r Retention) String() string {
	if r.IsZero() {
		return ""
	}
	parts := []string{"default=" + FormatWindow(r.Default)}
	for _, t := range r.Tables {
		parts = append(parts, t.Glob+"="+FormatWindow(t.Keep))
	}
	return strings.Join(parts, ",")
}
