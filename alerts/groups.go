package alerts

import (
	"context"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
)

// GroupLookup tells whether a user of the application belongs to one of
// its groups (routes with groups=), as of now: membership is read when an
// alert is delivered.
type GroupLookup interface {
	Member(ctx context.Context, userID int64, groups []string) (bool, error)
}

// groupXMLID is an Odoo group's xml id: module.name.
var groupXMLID = regexp.MustCompile(`^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$`)

// Querier runs one query (*pgxpool.Pool, *pgx.Conn).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// OdooGroups reads Odoo's group memberships: res_groups_users_rel, closed
// over res_groups_implied_rel, the groups named by their xml ids
// (ir_model_data), on a normal connection to the application's database.
type OdooGroups struct{ DB Querier }

const odooMemberSQL = `
WITH RECURSIVE g(id) AS (
    SELECT r.gid FROM res_groups_users_rel r WHERE r.uid = $1
    UNION
    SELECT i.hid FROM res_groups_implied_rel i JOIN g ON i.gid = g.id
)
SELECT EXISTS (
    SELECT 1 FROM g JOIN ir_model_data d ON d.model = 'res.groups' AND d.res_id = g.id
    WHERE d.module || '.' || d.name = ANY($2))`

// Member implements GroupLookup.
func (o OdooGroups) Member(ctx context.Context, userID int64, groups []string) (bool, error) {
	var in bool
	if err := o.DB.QueryRow(ctx, odooMemberSQL, userID, groups).Scan(&in); err != nil {
		return false, fmt.Errorf("reading the groups of user %d: %w", userID, err)
	}
	return in, nil
}
