// Package correlate will name the application user and login session behind
// each change (profiles: odoo, generic), between the decoder and the store.
// Until it exists, every event's actor is "none": see docs/event-format.md.
package correlate
