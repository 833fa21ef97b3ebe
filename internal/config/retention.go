package config

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cdcaudit/cdcaudit/sink"
)

// Retention is how long events are kept: Default for every table (0:
// forever), or the window of the first of Tables whose glob matches.
type Retention struct {
	Default time.Duration
	Tables  []sink.TableRetention
}

// IsZero reports whether nothing is ever pruned.
func (r Retention) IsZero() bool { return r.Default == 0 && len(r.Tables) == 0 }

// String writes r as the flag takes it.
func (r Retention) String() string {
	if r.IsZero() {
		return ""
	}
	parts := []string{"default=" + sink.FormatWindow(r.Default)}
	for _, t := range r.Tables {
		parts = append(parts, t.Glob+"="+sink.FormatWindow(t.Keep))
	}
	return strings.Join(parts, ",")
}

// ParseRetention reads the flag's form: "400d" (the default window), or
// comma-separated "default=400d" and "glob=window" items.
func ParseRetention(s string) (Retention, error) {
	var r Retention
	for _, item := range splitList(s) {
		name, win, ok := strings.Cut(item, "=")
		if !ok {
			name, win = "default", item
		}
		if err := r.add(strings.TrimSpace(name), win); err != nil {
			return Retention{}, err
		}
	}
	return r, nil
}

// add sets the default window or appends a table's.
func (r *Retention) add(name, win string) error {
	d, err := sink.ParseWindow(win)
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
	r.Tables = append(r.Tables, sink.TableRetention{Glob: name, Keep: d})
	return nil
}

// applyRetention reads the YAML form: a window, or a mapping of "default"
// and table globs to windows, in order.
func applyRetention(c *Config, n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		r, err := ParseRetention(n.Value)
		if err != nil {
			return err
		}
		c.Retention = r
		return nil
	case yaml.MappingNode:
	default:
		return errors.New("want a window (400d) or a mapping of default and table globs to windows")
	}
	var r Retention
	hasDefault := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if vn.Kind != yaml.ScalarNode || vn.Tag == "!!null" {
			return fmt.Errorf("line %d: %s: want a window (400d, 10y, forever)", vn.Line, kn.Value)
		}
		if kn.Value == "default" {
			if hasDefault {
				return fmt.Errorf("line %d: default is given twice", kn.Line)
			}
			hasDefault = true
		}
		if err := r.add(kn.Value, vn.Value); err != nil {
			return fmt.Errorf("line %d: %v", kn.Line, err)
		}
	}
	c.Retention = r
	return nil
}

// Policy returns the store's retention policy.
func (r Retention) Policy() sink.Retention {
	return sink.Retention{Default: r.Default, Tables: r.Tables}
}
