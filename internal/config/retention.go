package config

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/cdcaudit/cdcaudit/sink"
)

// applyRetention reads the YAML form of retention: a window, or a mapping
// of "default" and table globs to windows, in order (sink.ParseRetention
// and Retention.AddWindow are the rules).
func applyRetention(c *Config, n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		r, err := sink.ParseRetention(n.Value)
		if err != nil {
			return err
		}
		c.Retention = r
		return nil
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
	c.Retention = r
	return nil
}
