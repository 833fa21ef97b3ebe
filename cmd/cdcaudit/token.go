package main

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/auth"
)

const tokenAbout = `
Make an API token for the HTTP API (Authorization: Bearer TOKEN) and print
it once, with the entry to add to the configuration's api_tokens. cdcaudit
keeps only the token's SHA-256: a lost token cannot be shown again; make a
new one and remove the old entry.

--role is what the token may read: admin (everything, and the admin
routes), viewer (everything, no admin routes) or self:LOGIN (only the
events and sessions of that application login).

--expires is a date (the token stops working at 00:00 UTC that day), an
RFC 3339 time, or a number of days from now (90d). Without it the token
does not expire.

The command reads no store and no configuration; it only prints.

Exit status: 0 success, 2 bad usage.`

const tokenExamples = `  cdcaudit token new --role viewer --name grafana --expires 90d
  cdcaudit token new --role self:alice@example.com --expires 2027-06-01
  cdcaudit token new --role admin --format json`

// tokenNow is the clock --expires 90d counts from; tests fix it.
var tokenNow = time.Now

func (c *cli) token(args []string) int {
	fs := c.flagSet("token", "new --role admin|viewer|self:LOGIN [--name NAME] [--expires DATE|Nd] [--format text|json]", tokenAbout, tokenExamples)
	role := fs.String("role", "", "`role`: what the token may read: admin, viewer or self:LOGIN (required)")
	name := fs.String("name", "", "the token's `name` in the configuration and the access log (default: the role and the start of the token's hash)")
	expires := fs.String("expires", "", "when it stops working: a `date` (2027-06-01), an RFC 3339 time, or days from now (90d)")
	format := fs.String("format", "text", "output `format`: text, or json (for scripts)")
	fs.order = []string{"role", "name", "expires", "format"}
	if len(args) > 0 && args[0] == "new" {
		args = args[1:]
	} else if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return c.usageErr("token", fmt.Errorf("want 'cdcaudit token new --role ROLE'"))
	}
	if code, done := c.parse(fs, args); done {
		return code
	}
	if *role == "" {
		return c.usageErr("token", fmt.Errorf("--role is required: admin, viewer or self:LOGIN"))
	}
	p, err := access.ParseRole(*role)
	if err != nil {
		return c.usageErr("token", fmt.Errorf("--role: %w", err))
	}
	if *format != "text" && *format != "json" {
		return c.usageErr("token", fmt.Errorf("--format: %q is not a format (want text or json)", *format))
	}
	var until time.Time
	if *expires != "" {
		now := tokenNow()
		if until, err = auth.ParseExpiry(*expires, now); err != nil {
			return c.usageErr("token", fmt.Errorf("--expires: %w", err))
		}
		if !until.After(now) {
			return c.usageErr("token", fmt.Errorf("--expires: %s is already past", until.Format(time.RFC3339)))
		}
	}
	secret, tok, err := auth.NewToken(p, cmp.Or(*name, "unnamed"), until)
	if err != nil {
		return c.usageErr("token", fmt.Errorf("--name: %w", err))
	}
	if *name == "" {
		tok.Name = string(p.Role) + "-" + hex.EncodeToString(tok.SHA256[:4])
	}
	entry := tok.String()
	if *format == "json" {
		out := map[string]string{"token": secret, "name": tok.Name, "role": p.String(),
			"sha256": hex.EncodeToString(tok.SHA256[:]), "entry": entry}
		if !until.IsZero() {
			out["expires"] = until.Format(time.RFC3339)
		}
		b, _ := json.Marshal(out)
		fmt.Fprintf(c.stdout, "%s\n", b)
		return exitOK
	}
	expiry := "does not expire"
	if !until.IsZero() {
		expiry = "expires " + until.Format(time.RFC3339)
	}
	fmt.Fprintf(c.stdout, `API token %s (role %s, %s). It is shown only now:

  %s

Add this entry to the configuration, then restart 'cdcaudit run':

  api_tokens:
    - "%s"

(or in the environment: CDCAUDIT_API_TOKENS="%s", entries separated by commas).
Send it as: Authorization: Bearer <token>
`, tok.Name, p.String(), expiry, secret, entry, entry)
	return exitOK
}
