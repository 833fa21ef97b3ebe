package rules

import (
	"encoding/json"
	"slices"
	"sort"
	"strconv"

	"github.com/cdcaudit/cdcaudit/audit"
)

// Odoo's tables the working-hours rule learns groups from.
const (
	tableGroups     = "res_groups"
	tableCategories = "ir_module_category"
	tableMembers    = "res_groups_users_rel"
)

// learn keeps groups, their categories and their members current from
// the stream (and from snapshot rows), whether or not working hours are
// configured now: turned on later, the rule knows them. Repeating a row
// changes nothing.
func (st *Stage) learn(e *audit.Event) {
	switch e.Table {
	case tableGroups:
		st.learnGroup(e)
	case tableCategories:
		id, ok := intOf(row(e), "id")
		if !ok {
			return
		}
		key := prefixCateg + strconv.FormatInt(id, 10)
		if e.Op == audit.OpDelete {
			delete(st.categs, id)
		} else if name, ok := nameOf(e.After); ok {
			st.categs[id] = name
		} else {
			return
		}
		st.dirty[key] = true
	case tableMembers:
		st.learnMember(e)
	}
}

func (st *Stage) learnGroup(e *audit.Event) {
	id, ok := intOf(row(e), "id")
	if !ok {
		return
	}
	key := prefixGroup + strconv.FormatInt(id, 10)
	if e.Op == audit.OpDelete {
		delete(st.groups, id)
		st.dirty[key] = true
		return
	}
	g := st.groups[id]
	if name, ok := nameOf(e.After); ok {
		g.Name = name
	}
	if c, ok := intOf(e.After, "category_id"); ok {
		g.Category = c
	} else if v, ok := e.After.Get("category_id"); ok && string(v) == "null" {
		g.Category = 0
	}
	st.groups[id] = g
	st.dirty[key] = true
}

func (st *Stage) learnMember(e *audit.Event) {
	if e.Op == audit.OpTruncate {
		for u := range st.members {
			st.dirty[prefixMember+strconv.FormatInt(u, 10)] = true
		}
		clear(st.members)
		return
	}
	r := row(e)
	uid, ok1 := intOf(r, "uid")
	gid, ok2 := intOf(r, "gid")
	if !ok1 || !ok2 {
		return
	}
	gids := st.members[uid]
	i := slices.Index(gids, gid)
	switch {
	case e.Op == audit.OpDelete && i >= 0:
		gids = slices.Delete(gids, i, i+1)
	case e.Op != audit.OpDelete && i < 0:
		gids = append(gids, gid)
		sort.Slice(gids, func(a, b int) bool { return gids[a] < gids[b] })
	default:
		return
	}
	if len(gids) == 0 {
		delete(st.members, uid)
	} else {
		st.members[uid] = gids
	}
	st.dirty[prefixMember+strconv.FormatInt(uid, 10)] = true
}

// row is the row an event names: its after-image, else its key or
// before-image (a delete).
func row(e *audit.Event) audit.Row {
	switch {
	case e.After != nil:
		return e.After
	case e.Before != nil:
		return e.Before
	}
	return e.Key
}

func intOf(r audit.Row, col string) (int64, bool) {
	v, ok := r.Get(col)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// nameOf reads a name column: text, or Odoo 16+'s translated jsonb
// ({"en_US": …}: English, else any).
func nameOf(r audit.Row) (string, bool) {
	v, ok := r.Get("name")
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, true
	}
	var m map[string]string
	if json.Unmarshal(v, &m) != nil || len(m) == 0 {
		return "", false
	}
	if s, ok := m["en_US"]; ok {
		return s, true
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return m[keys[0]], true
}
