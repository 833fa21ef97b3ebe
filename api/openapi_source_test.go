package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/cdcaudit/cdcaudit/audit"
)

// The Event schema takes an event with its source member and one stored
// before it existed, and refuses a source no configuration allows.
func TestOpenAPIEventSource(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["Event"].Value
	event := func(source string) any {
		e := &audit.Event{CommitLSN: 0x100, Ordinal: 1, XID: 7, CommitTime: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC),
			Database: "erp", Source: source, Schema: "public", Table: "t", Op: audit.OpInsert,
			Key: audit.Row{{Name: "id", Value: []byte("1")}}, After: audit.Row{{Name: "id", Value: []byte("1")}}, Changed: []string{"id"}}
		rec, _ := audit.Seal(nil, e.AppendBody(nil), audit.Genesis)
		var v any
		if err := json.Unmarshal(rec, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, source := range []string{"erp_a", ""} {
		if err := schema.VisitJSON(event(source)); err != nil {
			t.Errorf("source %q: %v", source, err)
		}
	}
	if err := schema.VisitJSON(event("erp a")); err == nil {
		t.Error("the schema takes a source with a space")
	}
}
