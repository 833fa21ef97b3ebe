package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/sink"
)

// value is a key's field as the sources write it: how text and YAML become
// the field's type, and back. Parsing is all it does; the owner's rules are
// the key's check.
type value interface {
	// set reads text: an environment variable, a flag (a list flag's
	// occurrences joined by commas), a YAML scalar. Lists are
	// comma-separated.
	set(text string) error
	// setYAML reads a YAML value that is not null.
	setYAML(n *yaml.Node) error
	// String writes the value as set reads it.
	String() string
	empty() bool
	kind() valueKind
}

type valueKind int

const (
	single valueKind = iota
	boolean
	list // YAML null is the empty list; a flag may be repeated
)

// plain are the field types setting declares; lists of other items are
// declared with listOf.
type plain interface {
	string | bool | int | time.Duration | []string | sink.Retention
}

func plainValue(p any) value {
	switch p := p.(type) {
	case *string:
		return (*stringValue)(p)
	case *bool:
		return (*boolValue)(p)
	case *int:
		return (*intValue)(p)
	case *time.Duration:
		return (*durationValue)(p)
	case *[]string:
		return (*stringsValue)(p)
	case *sink.Retention:
		return (*retentionValue)(p)
	}
	panic(fmt.Sprintf("config: no value for %T", p)) // excluded by plain
}

// scalarYAML reads a YAML scalar with set. A scalar YAML types as a number
// ("slot: 123") is taken as written.
func scalarYAML(n *yaml.Node, set func(string) error) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a single value, not a %s", kindName(n.Kind))
	}
	return set(n.Value)
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "complex value"
}

type stringValue string

func (v *stringValue) set(s string) error           { *v = stringValue(s); return nil }
func (v *stringValue) setYAML(n *yaml.Node) error   { return scalarYAML(n, v.set) }
func (v *stringValue) String() string               { return string(*v) }
func (v *stringValue) empty() bool                  { return *v == "" }
func (v *stringValue) kind() valueKind              { return single }
func (v *boolValue) setYAML(n *yaml.Node) error     { return scalarYAML(n, v.set) }
func (v *boolValue) String() string                 { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) empty() bool                    { return !bool(*v) }
func (v *boolValue) kind() valueKind                { return boolean }
func (v *durationValue) setYAML(n *yaml.Node) error { return scalarYAML(n, v.set) }
func (v *durationValue) String() string             { return time.Duration(*v).String() }
func (v *durationValue) empty() bool                { return *v == 0 }
func (v *durationValue) kind() valueKind            { return single }

type intValue int

func (v *intValue) set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid whole number %q", s)
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) setYAML(n *yaml.Node) error { return scalarYAML(n, v.set) }
func (v *intValue) String() string             { return strconv.Itoa(int(*v)) }
func (v *intValue) empty() bool                { return *v == 0 }
func (v *intValue) kind() valueKind            { return single }

type boolValue bool

func (v *boolValue) set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("invalid boolean %q (want true or false)", s)
	}
	*v = boolValue(b)
	return nil
}

type durationValue time.Duration

func (v *durationValue) set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*v = durationValue(d)
	return nil
}

type stringsValue []string

func (v *stringsValue) set(s string) error { *v = splitList(s); return nil }
func (v *stringsValue) String() string     { return strings.Join(*v, ",") }
func (v *stringsValue) empty() bool        { return len(*v) == 0 }
func (v *stringsValue) kind() valueKind    { return list }

func (v *stringsValue) setYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return v.set(n.Value)
	case yaml.SequenceNode:
		var items []string
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
				return fmt.Errorf("line %d: want a list of strings", e.Line)
			}
			items = append(items, strings.TrimSpace(e.Value))
		}
		*v = items
		return nil
	}
	return errors.New("want a list of strings")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// items says how the items of a list are read: from text (a flag, a
// variable, a YAML string) by parse, from another YAML form (a mapping) by
// fromYAML when the list has one (nil: strings only). form names the list
// in errors: "want a list of <form>".
type items[T fmt.Stringer] struct {
	form     string
	parse    func(string) (T, error)
	fromYAML func(*yaml.Node) (T, error)
}

type itemsValue[T fmt.Stringer] struct {
	p  *[]T
	it items[T]
}

func (v itemsValue[T]) kind() valueKind { return list }
func (v itemsValue[T]) empty() bool     { return len(*v.p) == 0 }

func (v itemsValue[T]) String() string {
	s := make([]string, len(*v.p))
	for i, x := range *v.p {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (v itemsValue[T]) set(s string) error {
	var out []T
	for _, text := range splitList(s) {
		x, err := v.it.parse(text)
		if err != nil {
			return err
		}
		out = append(out, x)
	}
	*v.p = out
	return nil
}

func (v itemsValue[T]) setYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return v.set(n.Value)
	case yaml.SequenceNode:
	default:
		return errors.New("want a list of " + v.it.form)
	}
	var out []T
	for _, e := range n.Content {
		if e.Kind == yaml.AliasNode {
			e = e.Alias
		}
		var x T
		var err error
		switch {
		case e.Kind == yaml.ScalarNode && e.Tag != "!!null":
			x, err = v.it.parse(e.Value)
		case v.it.fromYAML != nil:
			x, err = v.it.fromYAML(e)
		default:
			err = errors.New("want a list of " + v.it.form)
		}
		if err != nil {
			return fmt.Errorf("line %d: %v", e.Line, err)
		}
		out = append(out, x)
	}
	*v.p = out
	return nil
}

// columnRules are redact's items: "schema.table.column[where=values]" or a
// mapping {table, column, where, values}.
var columnRules = items[profile.ColumnRule]{
	form:  "rules (schema.table.column, or {table: …, column: …, where: …, values: […]})",
	parse: profile.ParseColumnRule,
	fromYAML: func(e *yaml.Node) (profile.ColumnRule, error) {
		var r profile.ColumnRule
		if e.Kind != yaml.MappingNode {
			return r, errors.New("want schema.table.column or a mapping {table, column, where, values}")
		}
		for i := 0; i+1 < len(e.Content); i += 2 {
			switch f := e.Content[i].Value; f {
			case "table", "column", "where", "values":
			default:
				return r, fmt.Errorf("unknown field %q (want table, column, where, values)", f)
			}
		}
		if err := e.Decode(&r); err != nil {
			return r, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return r, r.Validate()
	},
}

type retentionValue sink.Retention

func (v *retentionValue) String() string  { return sink.Retention(*v).String() }
func (v *retentionValue) empty() bool     { return sink.Retention(*v).IsZero() }
func (v *retentionValue) kind() valueKind { return single }

func (v *retentionValue) set(s string) error {
	r, err := sink.ParseRetention(s)
	if err != nil {
		return err
	}
	*v = retentionValue(r)
	return nil
}

// setYAML reads a window, or a mapping of "default" and table globs to
// windows, in order.
func (v *retentionValue) setYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return v.set(n.Value)
	case yaml.MappingNode:
	default:
		return errors.New("want a window (400d) or a mapping of default and table globs to windows")
	}
	var r sink.Retention
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
		if err := r.AddWindow(kn.Value, vn.Value); err != nil {
			return fmt.Errorf("line %d: %v", kn.Line, err)
		}
	}
	*v = retentionValue(r)
	return nil
}
