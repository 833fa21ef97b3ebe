package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cdcaudit/cdcaudit/access"
)

// Users is the application's own table of users, as password sign-in
// reads it.
type Users interface {
	// Lookup returns the account of login, or ErrNoAccount when there is
	// none.
	Lookup(ctx context.Context, login string) (Account, error)
}

// ErrNoAccount is a login the application does not have.
var ErrNoAccount = errors.New("no such account")

// Account is what sign-in needs of one application user.
type Account struct {
	// ID is the application's id of the user.
	ID int64
	// PasswordHash is the password as the application stores it (Odoo:
	// passlib's $pbkdf2-sha512$…); "" when the user has none.
	PasswordHash string
	// TOTPSecret is the base32 two-factor secret; "" when two-factor is off.
	TOTPSecret string
	// Role is what the user may read here: access.Admin, access.Viewer or
	// access.Self; "" when the user may not sign in at all (inactive,
	// portal, public, or in no internal group).
	Role access.Role
}

// The groups of Odoo that decide a role, by xml id.
const (
	odooAdminGroup    = "base.group_system" // Settings
	odooInternalGroup = "base.group_user"   // Internal User
)

var xmlIDRE = regexp.MustCompile(`^[a-z0-9_]+\.[A-Za-z0-9_]+$`)

// ValidateGroupXMLID says whether s is an Odoo xml id of a group
// ("module.name", e.g. sales_team.group_sale_manager).
func ValidateGroupXMLID(s string) error {
	if len(s) > 200 || !xmlIDRE.MatchString(s) {
		return fmt.Errorf("group %q: want an Odoo xml id, module.name (e.g. sales_team.group_sale_manager)", s)
	}
	return nil
}

// OdooUsers reads Odoo 18's res_users over a connection pool to the ERP's
// database.
type OdooUsers struct {
	pool        *pgxpool.Pool
	viewerGroup string
}

// NewOdooUsers reads users through pool. Members of viewerGroup (an xml id;
// "" for none) are viewers; members of base.group_system admins; other
// internal users self.
func NewOdooUsers(pool *pgxpool.Pool, viewerGroup string) (*OdooUsers, error) {
	if viewerGroup != "" {
		if err := ValidateGroupXMLID(viewerGroup); err != nil {
			return nil, err
		}
	}
	return &OdooUsers{pool: pool, viewerGroup: viewerGroup}, nil
}

// odooUserSQL reads one user by login, as Odoo's own login does (exact
// login, one row: res_users_login_key is unique). Memberships are read
// from res_groups_users_rel, closed over res_groups_implied_rel (Odoo 18
// also writes implied groups into the relation; the closure keeps a
// membership added by hand meaning what Odoo would make of it), and named
// by their xml ids in ir_model_data. totp_secret exists only once auth_totp
// is installed; to_jsonb reads it whether or not it does.
const odooUserSQL = `
SELECT u.id, u.active, u.share, coalesce(u.password, ''),
       coalesce(to_jsonb(u) ->> 'totp_secret', ''),
       coalesce((
           WITH RECURSIVE g(id) AS (
               SELECT r.gid FROM res_groups_users_rel r WHERE r.uid = u.id
               UNION
               SELECT i.hid FROM res_groups_implied_rel i JOIN g ON i.gid = g.id
           )
           SELECT array_agg(DISTINCT d.module || '.' || d.name)
           FROM g JOIN ir_model_data d ON d.model = 'res.groups' AND d.res_id = g.id
           WHERE d.module || '.' || d.name = ANY($2)
       ), '{}')
FROM res_users u
WHERE u.login = $1
LIMIT 1`

// Lookup implements Users.
func (o *OdooUsers) Lookup(ctx context.Context, login string) (Account, error) {
	groups := []string{odooAdminGroup, odooInternalGroup}
	if o.viewerGroup != "" {
		groups = append(groups, o.viewerGroup)
	}
	var (
		a             Account
		active, share bool
		member        []string
	)
	err := o.pool.QueryRow(ctx, odooUserSQL, login, groups).Scan(&a.ID, &active, &share, &a.PasswordHash, &a.TOTPSecret, &member)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrNoAccount
	}
	if err != nil {
		return Account{}, fmt.Errorf("reading res_users: %w", err)
	}
	in := func(g string) bool { return slices.Contains(member, g) }
	switch {
	case !active || share:
		// Archived, portal and public users: no role.
	case in(odooAdminGroup):
		a.Role = access.Admin
	case o.viewerGroup != "" && in(o.viewerGroup):
		a.Role = access.Viewer
	case in(odooInternalGroup):
		a.Role = access.Self
	}
	return a, nil
}
