package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/replication"
)

// KeyDatabases is the list of the databases one daemon watches. Unlike
// every other key it is set in the YAML file only (a list of mappings has
// no flag or variable form), so it is not among Keys().
const KeyDatabases = "databases"

// Database is one ERP database a daemon watches, its defaults applied:
// its connection, its source name, its slot and publication, and the
// directory of its store.
type Database struct {
	DSN, Source, Slot, Publication string
	// DataDir is <data_dir>/<source> for an item of databases, data_dir
	// itself for the single dsn (where stores have always been).
	DataDir string
}

// String describes the database without the DSN's password.
func (d Database) String() string {
	return fmt.Sprintf("source=%s dsn=%s slot=%s publication=%s data_dir=%s", d.Source, DescribeDSN(d.DSN), d.Slot, d.Publication, d.DataDir)
}

// databaseItem is one item of databases as written, and where.
type databaseItem struct {
	dsn, source, slot, publication string
	pos                            string // file:line
}

// databaseFields are an item's fields, in documentation order.
var databaseFields = []string{"dsn", "source", "slot", "publication"}

// readDatabases reads the databases key's YAML list.
// Its errors say where: keyPos is the key's position.
func readDatabases(file, keyPos string, n *yaml.Node) ([]databaseItem, error) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, fmt.Errorf("databases: want a list of databases, each a mapping {dsn: URL, source: NAME, slot: NAME, publication: NAME} (only dsn is required) (from %s)", keyPos)
	}
	var out []databaseItem
	for i, e := range n.Content {
		if e.Kind == yaml.AliasNode {
			e = e.Alias
		}
		it := databaseItem{pos: fmt.Sprintf("%s:%d", file, e.Line)}
		if e.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("databases[%d]: want a mapping {dsn: URL, source: NAME, slot: NAME, publication: NAME} (from %s)", i, it.pos)
		}
		for j := 0; j+1 < len(e.Content); j += 2 {
			kn, vn := e.Content[j], e.Content[j+1]
			at := fmt.Sprintf("%s:%d", file, kn.Line)
			var field *string
			switch kn.Value {
			case "dsn":
				field = &it.dsn
			case "source":
				field = &it.source
			case "slot":
				field = &it.slot
			case "publication":
				field = &it.publication
			default:
				return nil, fmt.Errorf("databases[%d]: unknown field %q (want %s) (from %s)", i, kn.Value, strings.Join(databaseFields, ", "), at)
			}
			if *field != "" {
				return nil, fmt.Errorf("databases[%d].%s: given twice (from %s)", i, kn.Value, at)
			}
			if vn.Kind != yaml.ScalarNode || vn.Tag == "!!null" || vn.Value == "" {
				return nil, fmt.Errorf("databases[%d].%s: want a single value (from %s)", i, kn.Value, at)
			}
			*field = vn.Value
		}
		out = append(out, it)
	}
	return out, nil
}

// resolveDatabases applies the items' defaults and checks them: either dsn
// or databases; each item's dsn, source, slot and publication valid;
// sources and slots unique; and no setting that belongs to one
// application's files while there are several databases.
func (c *Config) resolveDatabases() error {
	if c.databaseItems == nil {
		return nil
	}
	src := c.Sources[KeyDatabases]
	if c.DSN != "" {
		return fmt.Errorf("config: %s: give either dsn or databases, not both (dsn from %s, databases from %s)", KeyDatabases, c.Sources[KeyDSN], src)
	}
	if s := c.Sources[KeySource]; s != "" && s != "default" {
		return fmt.Errorf("config: %s: with databases each one names its source (databases[N].source), not the top-level source (from %s)", KeySource, s)
	}
	c.DatabaseList = make([]Database, len(c.databaseItems))
	sources, slots := map[string]int{}, map[string]int{}
	for i, it := range c.databaseItems {
		fail := func(field string, err error) error {
			return fmt.Errorf("config: %s[%d].%s: %v (from %s)", KeyDatabases, i, field, err, it.pos)
		}
		d := Database{DSN: it.dsn, Source: it.source, Slot: it.slot, Publication: it.publication}
		if d.DSN == "" {
			return fail("dsn", errors.New("required: the database's connection URL"))
		}
		if err := replication.ValidateDSN(d.DSN); err != nil {
			return fail("dsn", err)
		}
		if d.Source == "" {
			s, err := DefaultSource(d.DSN)
			if err != nil {
				return fail("source", err)
			}
			d.Source = s
		}
		if err := audit.ValidSource(d.Source); err != nil {
			return fail("source", err)
		}
		if j, dup := sources[d.Source]; dup {
			return fail("source", fmt.Errorf("%q is also databases[%d]'s: each database needs a source of its own (set source)", d.Source, j))
		}
		sources[d.Source] = i
		if d.Slot == "" {
			d.Slot = DefaultDatabaseSlot(c.Slot, d.Source)
			if err := replication.ValidateSlotName(d.Slot); err != nil {
				return fail("slot", fmt.Errorf("the default, slot_<source>, is not a slot name: %v (set slot)", err))
			}
		}
		if err := replication.ValidateSlotName(d.Slot); err != nil {
			return fail("slot", err)
		}
		if j, dup := slots[d.Slot]; dup {
			return fail("slot", fmt.Errorf("%q is also databases[%d]'s: each database needs a slot of its own", d.Slot, j))
		}
		slots[d.Slot] = i
		if d.Publication == "" {
			d.Publication = c.Publication
		}
		if err := replication.ValidatePublicationName(d.Publication); err != nil {
			return fail("publication", err)
		}
		d.DataDir = filepath.Join(c.DataDir, d.Source)
		c.DatabaseList[i] = d
	}
	if len(c.DatabaseList) > 1 {
		for _, k := range oneApplicationKeys {
			if kv, _ := lookupKey(k.key); !kv.value(c).empty() {
				return fmt.Errorf("config: %s: %s, and databases lists %d: run one cdcaudit per database to use it (from %s)",
					k.key, k.why, len(c.DatabaseList), c.Sources[k.key])
			}
		}
	}
	return nil
}

// oneApplicationKeys are the settings that belong to one application
// instance's files or endpoint, which a daemon watching several databases
// cannot tell apart (docs/configuration.md, "Many databases").
var oneApplicationKeys = []struct{ key, why string }{
	{KeySessionStore, "the session directory is one Odoo's"},
	{KeyAppLog, "the log file is one Odoo's"},
	{KeySessionEndWebhook, "the webhook's request does not say which database the session is of"},
}

// DefaultDatabaseSlot is the slot of a database of databases that names
// none: "<slot>_<source>", the source's '.' and '-' as '_' and its letters
// in lower case (a slot name allows only a-z, 0-9 and _).
func DefaultDatabaseSlot(slot, source string) string {
	s := strings.ToLower(strings.NewReplacer(".", "_", "-", "_").Replace(source))
	return slot + "_" + s
}

// Databases returns the databases to watch: the items of databases, or
// the one database of dsn (source, slot and publication the top-level
// ones, its store in data_dir itself) — so that run has one code path.
func (c *Config) Databases() []Database {
	if c.DatabaseList != nil {
		return c.DatabaseList
	}
	return []Database{{DSN: c.DSN, Source: c.Source, Slot: c.Slot, Publication: c.Publication, DataDir: c.DataDir}}
}

// For returns the configuration of one database of Databases: c with the
// database's dsn, source, slot, publication and data_dir, every other
// setting shared.
func (c *Config) For(d Database) *Config {
	dc := *c
	dc.DSN, dc.Source, dc.Slot, dc.Publication, dc.DataDir = d.DSN, d.Source, d.Slot, d.Publication, d.DataDir
	dc.DatabaseList, dc.databaseItems = nil, nil
	return &dc
}

// DatabaseAt returns the configuration of the database of databases whose
// store dir is (<data_dir>/<source>, named by its last element), for a
// command given one store of a daemon that watches several; without
// databases, c itself. ok is false when no database's store is dir.
func (c *Config) DatabaseAt(dir string) (cfg *Config, ok bool) {
	if c.DatabaseList == nil {
		return c, true
	}
	for _, d := range c.DatabaseList {
		if d.Source == filepath.Base(filepath.Clean(dir)) {
			dc := c.For(d)
			dc.DataDir = dir
			return dc, true
		}
	}
	return nil, false
}
