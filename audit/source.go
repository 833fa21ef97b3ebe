package audit

import "fmt"

// maxSourceLen bounds a source name: a directory name, a Kafka header and
// topic part, a Prometheus label value, a SQL text value.
const maxSourceLen = 64

// ValidSource checks a source name (the event's source member, config
// key source): 1–64 bytes of [A-Za-z0-9._-], the
// first one a letter or digit.
func ValidSource(s string) error {
	if s == "" || len(s) > maxSourceLen {
		return fmt.Errorf("%q is not a source name: want 1 to %d characters", s, maxSourceLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("%q is not a source name: want letters, digits, '.', '_' and '-', starting with a letter or digit", s)
		}
	}
	return nil
}
