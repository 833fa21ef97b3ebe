package kafkasink

import (
	"errors"
	"fmt"
	"strings"
)

// MaxTopicLen is Kafka's longest topic name.
const MaxTopicLen = 249

// topicTemplate is a parsed sink_kafka_topic: literal parts and the
// placeholders {source}, {schema} and {table} between them.
type topicTemplate struct {
	parts []topicPart
	fixed bool // no placeholder: one topic
}

type topicPart struct {
	lit string
	ph  string // "source", "schema" or "table" when this part is a placeholder
}

// ValidateTopic checks a sink_kafka_topic value: a topic name, or a
// template in which {source}, {schema} and {table} stand for the store's
// source and the event's schema and table. Outside the placeholders only Kafka's topic characters are
// allowed (ASCII letters, digits, '.', '_', '-').
func ValidateTopic(s string) error { _, err := parseTopic(s); return err }

func parseTopic(s string) (topicTemplate, error) {
	if s == "" {
		s = DefaultTopic
	}
	var t topicTemplate
	rest := s
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, topicPart{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, topicPart{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return t, fmt.Errorf("topic %q: unclosed {", s)
		}
		ph := rest[i+1 : i+j]
		if ph != "source" && ph != "schema" && ph != "table" {
			return t, fmt.Errorf("topic %q: unknown placeholder {%s} (want {source}, {schema} or {table})", s, ph)
		}
		t.parts = append(t.parts, topicPart{ph: ph})
		rest = rest[i+j+1:]
	}
	n := 0
	t.fixed = true
	for _, p := range t.parts {
		if p.ph != "" {
			t.fixed = false
			continue
		}
		if c, ok := badTopicChar(p.lit); ok {
			return t, fmt.Errorf("topic %q: %q is not allowed in a topic name (ASCII letters, digits, '.', '_', '-')", s, c)
		}
		n += len(p.lit)
	}
	if n > MaxTopicLen {
		return t, fmt.Errorf("topic %q: longer than %d characters", s, MaxTopicLen)
	}
	if t.fixed && (s == "." || s == "..") {
		return t, fmt.Errorf("topic %q is not a valid name", s)
	}
	return t, nil
}

// name is the topic of an event of source's schema.table. A character of
// a schema or table name that a topic cannot hold becomes '_'.
func (t topicTemplate) name(source, schema, table string) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.ph {
		case "":
			b.WriteString(p.lit)
		case "source":
			writeTopicSafe(&b, source)
		case "schema":
			writeTopicSafe(&b, schema)
		case "table":
			writeTopicSafe(&b, table)
		}
	}
	s := b.String()
	switch {
	case s == "" || s == "." || s == "..":
		return "", fmt.Errorf("topic %q for %s.%s is not a valid name", s, schema, table)
	case len(s) > MaxTopicLen:
		return "", errors.New("topic for " + schema + "." + table + " is longer than Kafka allows")
	}
	return s, nil
}

func writeTopicSafe(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if topicChar(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
}

func topicChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

func badTopicChar(s string) (string, bool) {
	for _, r := range s {
		if r >= 0x80 || !topicChar(byte(r)) {
			return string(r), true
		}
	}
	return "", false
}
