package profile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads a profile from a YAML file (the generic profile: an
// application cdcaudit has no built-in knowledge of). Unknown keys are
// errors, so a misspelt column key is never silently ignored; the profile
// is then checked with Validate. A missing name becomes "generic".
func Load(file string) (Profile, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Profile{}, err
	}
	p, err := Parse(data)
	if err != nil {
		return Profile{}, fmt.Errorf("%s: %w", file, err)
	}
	return p, nil
}

// Parse is Load of a document already read.
func Parse(data []byte) (Profile, error) {
	var p Profile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return Profile{}, errors.New("empty profile (want a YAML mapping with sessions, columns, secrets …)")
		}
		return Profile{}, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Profile{}, errors.New("more than one YAML document (want exactly one profile)")
	}
	if p.Name == "" {
		p.Name = "generic"
	}
	if err := p.Validate(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Validate checks that every table named is "schema.table", that every
// mapped table has the columns without which it cannot be used, and that
// every ColumnRule is well formed. Errors name the field ("sessions[0].id").
func (p Profile) Validate() error {
	u := p.Users
	if u != (UsersTable{}) {
		if err := checkTable("users.table", u.Table); err != nil {
			return err
		}
		if u.ID == "" {
			return errors.New("users.id: missing (the column holding the user id)")
		}
		if u.Login == "" {
			return errors.New("users.login: missing (the column holding the login name)")
		}
	}
	for i, l := range p.Logins {
		f := fmt.Sprintf("logins[%d]", i)
		if err := checkTable(f+".table", l.Table); err != nil {
			return err
		}
		if l.User == "" {
			return fmt.Errorf("%s.user: missing (the column naming who logged in)", f)
		}
	}
	for i, s := range p.Sessions {
		f := fmt.Sprintf("sessions[%d]", i)
		if err := checkTable(f+".table", s.Table); err != nil {
			return err
		}
		switch s.Kind {
		case "device_log", "session":
		case "":
			return fmt.Errorf("%s.kind: missing (want session or device_log)", f)
		default:
			return fmt.Errorf("%s.kind: %q is not a session table kind (want session or device_log)", f, s.Kind)
		}
		if s.ID == "" {
			return fmt.Errorf("%s.id: missing (the column holding the session identifier)", f)
		}
		if s.IDLength < 0 {
			return fmt.Errorf("%s.id_length: %d is negative", f, s.IDLength)
		}
		if s.UserKey != "" && s.User == "" {
			return fmt.Errorf("%s.user_key: set without user (the column holding the document)", f)
		}
		if s.RevokedBy != "" && s.Revoked == "" {
			return fmt.Errorf("%s.revoked_by: set without revoked", f)
		}
	}
	if m := p.Models; m != nil {
		if err := checkTable("models.table", m.Table); err != nil {
			return err
		}
		if m.Model == "" {
			return errors.New("models.model: missing (the column holding the model name)")
		}
	}
	for i, r := range p.Secrets {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("secrets[%d]: %w", i, err)
		}
	}
	for i, r := range p.RawWrites {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("raw_writes[%d]: %w", i, err)
		}
	}
	for i, t := range p.Reflection {
		if err := (ColumnRule{Table: t, Column: "*"}).Validate(); err != nil {
			return fmt.Errorf("reflection[%d]: %w", i, err)
		}
	}
	return nil
}

// checkTable accepts a plain "schema.table" (no globs: these are tables
// cdcaudit reads rows of).
func checkTable(field, t string) error {
	if t == "" {
		return fmt.Errorf("%s: missing (want schema.table, e.g. public.http_sessions)", field)
	}
	schema, table, ok := strings.Cut(t, ".")
	if !ok || schema == "" || table == "" {
		return fmt.Errorf("%s: %q is not schema.table (e.g. public.http_sessions)", field, t)
	}
	if strings.ContainsAny(t, `*?[\`) {
		return fmt.Errorf("%s: %q: a table here is a name, not a glob", field, t)
	}
	return nil
}

// Validate checks a rule: Table and Column are well-formed globs, Table
// schema-qualified ("public.res_users", "*.res_users", or "*" for every
// table), and Where and Values come together.
func (r ColumnRule) Validate() error {
	if r.Table == "" {
		return errors.New("table: missing (want a schema.table glob, e.g. public.res_users)")
	}
	if r.Table != "*" && !strings.Contains(r.Table, ".") {
		return fmt.Errorf("table: %q is not schema-qualified (want e.g. public.%s or *.%s)", r.Table, r.Table, r.Table)
	}
	if _, err := path.Match(r.Table, ""); err != nil {
		return fmt.Errorf("table: %q: malformed glob", r.Table)
	}
	if r.Column == "" {
		return errors.New("column: missing")
	}
	if _, err := path.Match(r.Column, ""); err != nil {
		return fmt.Errorf("column: %q: malformed glob", r.Column)
	}
	if r.Where == "" && len(r.Values) > 0 {
		return errors.New("values: given without where (the column whose value they match)")
	}
	if r.Where != "" && len(r.Values) == 0 {
		return fmt.Errorf("where: %q given without values (the globs its value must match)", r.Where)
	}
	for i, v := range r.Values {
		if _, err := path.Match(v, ""); err != nil {
			return fmt.Errorf("values[%d]: %q: malformed glob", i, v)
		}
	}
	return nil
}

// String formats a rule for logs and --print-config:
// "public.ir_config_parameter.value[key=database.secret|*secret*]".
func (r ColumnRule) String() string {
	s := r.Table + "." + r.Column
	if r.Where != "" {
		s += "[" + r.Where + "=" + strings.Join(r.Values, "|") + "]"
	}
	return s
}

// Match reports whether name matches a glob of ColumnRule's syntax: that of
// path.Match (*, ?, [a-z], \ escapes), except that * and ? also match '/'
// (names and values here are not paths: ir_config_parameter keys such as
// "auth_oauth/secret" must match "*secret*"). A malformed pattern matches
// nothing; Validate rejects it beforehand.
func Match(pattern, name string) bool {
	if strings.IndexByte(pattern, '/') >= 0 || strings.IndexByte(name, '/') >= 0 {
		// path.Match stops * and ? at '/': map it to a byte that neither a
		// PostgreSQL name nor a text value can hold.
		pattern = strings.ReplaceAll(pattern, "/", "\x00")
		name = strings.ReplaceAll(name, "/", "\x00")
	}
	ok, err := path.Match(pattern, name)
	return ok && err == nil
}

// ParseColumnRule is the inverse of ColumnRule.String, for rules given on a
// command line or in an environment variable: "schema.table.column" (the
// column is what follows the last dot), optionally followed by
// "[where=glob|glob…]". The rule is validated.
func ParseColumnRule(s string) (ColumnRule, error) {
	var r ColumnRule
	s = strings.TrimSpace(s)
	rest := s
	if strings.HasSuffix(s, "]") {
		if i := strings.LastIndexByte(s, '['); i >= 0 && strings.Contains(s[i:], "=") {
			where, values, _ := strings.Cut(s[i+1:len(s)-1], "=")
			r.Where = strings.TrimSpace(where)
			for _, v := range strings.Split(values, "|") {
				if v = strings.TrimSpace(v); v != "" {
					r.Values = append(r.Values, v)
				}
			}
			rest = s[:i]
		}
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot <= 0 || dot == len(rest)-1 {
		return ColumnRule{}, fmt.Errorf("%q is not schema.table.column (e.g. public.res_partner.vat, or *.*.api_key)", s)
	}
	r.Table, r.Column = rest[:dot], rest[dot+1:]
	if err := r.Validate(); err != nil {
		return ColumnRule{}, fmt.Errorf("%q: %w", s, err)
	}
	return r, nil
}
