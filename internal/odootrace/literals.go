package odootrace

import "strings"

// Literals returns the string literals tx's statements write into
// table.column, in statement order: a test that must not find a value
// anywhere (a typed password, a key's hash) takes it from the recording
// instead of copying it by hand.
//
// It reads the three shapes Odoo 18 writes with: the ORM's
// INSERT INTO "t" ("a", "b") VALUES (…), (…); the ORM's
// UPDATE "t" SET … FROM (VALUES (…), (…)) AS "__tmp"("id", "a", …); and raw
// SQL's UPDATE t SET a='…' and INSERT INTO t (a, b) VALUES (…). NULLs,
// numbers and expressions are not string literals and are left out.
func (tx *Tx) Literals(table, column string) []string {
	var out []string
	for _, stmt := range tx.Stmts {
		if !writes(stmt, table) {
			continue
		}
		out = append(out, stmtLiterals(sqlTokens(stmt), column)...)
	}
	return out
}

func writes(stmt, table string) bool {
	for _, t := range writtenTables(stmt) {
		if t == table {
			return true
		}
	}
	return false
}

// token is a lexical token of a statement: an identifier (quoted or bare,
// bare ones lower-cased), a string literal (unescaped), or punctuation and
// anything else as its text.
type token struct {
	kind byte // 'i' identifier, 's' string literal, 'p' punctuation or other
	text string
}

func sqlTokens(s string) []token {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for j < len(s) {
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						b.WriteByte(c)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			kind := byte('s')
			if c == '"' {
				kind = 'i'
			}
			out = append(out, token{kind, b.String()})
			i = j + 1
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			out = append(out, token{'i', strings.ToLower(s[i:j])})
			i = j
		default:
			out = append(out, token{'p', s[i : i+1]})
			i++
		}
	}
	return out
}

// stmtLiterals finds the column list (after INTO t or AS alias), every
// VALUES tuple, and SET column = 'literal', and returns column's literals.
func stmtLiterals(toks []token, column string) []string {
	var cols []string
	var tuples [][]token // first token of each element, per tuple
	var out []string
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == 'i' && (t.text == "into" || t.text == "as") && i+2 < len(toks) && toks[i+1].kind == 'i' && toks[i+2] == (token{'p', "("}) && cols == nil:
			var end int
			cols, end = listElements(toks, i+2)
			i = end
		case t.kind == 'i' && t.text == "values":
			for j := i + 1; j < len(toks) && toks[j] == (token{'p', "("}); {
				elems, end := listElements(toks, j)
				var first []token
				for _, e := range elems {
					first = append(first, token{kind: e[0], text: e[1:]})
				}
				tuples = append(tuples, first)
				j = end + 1
				if j >= len(toks) || toks[j] != (token{'p', ","}) {
					i = end
					break
				}
				j++
			}
		case t.kind == 'i' && t.text == column && i+2 < len(toks) && toks[i+1] == (token{'p', "="}) && toks[i+2].kind == 's':
			out = append(out, toks[i+2].text)
		}
	}
	for k, c := range cols {
		if c[1:] != column {
			continue
		}
		for _, tup := range tuples {
			if k < len(tup) && tup[k].kind == 's' {
				out = append(out, tup[k].text)
			}
		}
	}
	return out
}

// listElements reads the parenthesised list opening at toks[open] and
// returns each element's first token (kind byte + text) and the index of
// the closing parenthesis.
func listElements(toks []token, open int) ([]string, int) {
	var elems []string
	depth, start := 0, true
	for i := open; i < len(toks); i++ {
		switch toks[i].text {
		case "(":
			if toks[i].kind == 'p' {
				depth++
				if depth == 1 {
					start = true
					continue
				}
			}
		case ")":
			if toks[i].kind == 'p' {
				depth--
				if depth == 0 {
					return elems, i
				}
			}
		case ",":
			if toks[i].kind == 'p' && depth == 1 {
				start = true
				continue
			}
		}
		if start && depth == 1 {
			elems = append(elems, string(toks[i].kind)+toks[i].text)
			start = false
		}
	}
	return elems, len(toks)
}
