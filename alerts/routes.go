package alerts

import (
	"fmt"
	"slices"
	"strings"
)

// Channels.
const (
	ChannelEmail   = "email"
	ChannelWebhook = "webhook"
)

// Targets: where one alert is delivered, each recorded on its own
// ("d/<id>/<target>"): a mail to the user it is about, a mail to the
// security mailbox, a webhook call.
const (
	TargetEmailUser     = "email-user"
	TargetEmailSecurity = "email-security"
	TargetWebhook       = "webhook"
)

// Route sends alerts of some kinds about some users to one channel.
type Route struct {
	Kinds   []string // "*": every kind but login
	Channel string   // ChannelEmail or ChannelWebhook
	To      []string // email: "user" and/or "security" (default security)
	Users   []string // logins; nil: all (alerts about nobody in particular too)
}

// String is the route in the syntax ParseRoutes reads.
func (r Route) String() string {
	s := "kind=" + strings.Join(r.Kinds, ",") + " channel=" + r.Channel
	if r.Channel == ChannelEmail {
		s += " to=" + strings.Join(r.To, ",")
	}
	if r.Users != nil {
		s += " users=" + strings.Join(r.Users, ",")
	}
	return s
}

// maxRoutes and maxRouteText bound what ParseRoutes accepts.
const (
	maxRoutes    = 64
	maxRouteText = 16 << 10
)

// ParseRoutes reads alert routes: routes separated by ";", each
// space-separated key=value fields:
//
//	kind=K[,K…]     required: alert kinds, or * for every kind but login
//	channel=C       required: email or webhook
//	to=T[,T…]       email only: user (the user's own address) and/or
//	                security (the security mailbox); default security
//	users=L[,L…]    only alerts about these logins; default all (which
//	                includes alerts about nobody in particular)
//
// e.g. "kind=new_device channel=email to=user,security; kind=orm_bypass
// channel=webhook". Empty text: no routes (nothing is delivered).
func ParseRoutes(text string) ([]Route, error) {
	if len(text) > maxRouteText {
		return nil, fmt.Errorf("longer than %d bytes", maxRouteText)
	}
	var out []Route
	for i, part := range strings.Split(text, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		r, err := parseRoute(part)
		if err != nil {
			return nil, fmt.Errorf("route %d %q: %w", i+1, strings.TrimSpace(part), err)
		}
		out = append(out, r)
		if len(out) > maxRoutes {
			return nil, fmt.Errorf("more than %d routes", maxRoutes)
		}
	}
	return out, nil
}

func parseRoute(text string) (Route, error) {
	var r Route
	seen := map[string]bool{}
	for _, field := range strings.Fields(text) {
		key, value, ok := strings.Cut(field, "=")
		if !ok || value == "" {
			return r, fmt.Errorf("%q is not key=value", field)
		}
		if seen[key] {
			return r, fmt.Errorf("%s given twice", key)
		}
		seen[key] = true
		list := strings.Split(value, ",")
		if slices.Contains(list, "") {
			return r, fmt.Errorf("%s: empty item in %q", key, value)
		}
		switch key {
		case "kind":
			for _, k := range list {
				if k != "*" && !slices.Contains(Kinds, k) {
					return r, fmt.Errorf("unknown kind %q (want * or one of %s)", k, strings.Join(Kinds, ", "))
				}
			}
			r.Kinds = list
		case "channel":
			if value != ChannelEmail && value != ChannelWebhook {
				return r, fmt.Errorf("unknown channel %q (want email or webhook)", value)
			}
			r.Channel = value
		case "to":
			for _, t := range list {
				if t != "user" && t != "security" {
					return r, fmt.Errorf("unknown recipient %q (want user or security)", t)
				}
			}
			r.To = list
		case "users":
			if value != "all" {
				r.Users = list
			}
		default:
			return r, fmt.Errorf("unknown key %q (want kind, channel, to or users)", key)
		}
	}
	switch {
	case r.Kinds == nil:
		return r, fmt.Errorf("no kind=")
	case r.Channel == "":
		return r, fmt.Errorf("no channel=")
	case r.To != nil && r.Channel != ChannelEmail:
		return r, fmt.Errorf("to= is for channel=email")
	case r.Channel == ChannelEmail && r.To == nil:
		r.To = []string{"security"}
	}
	return r, nil
}

// matches reports whether the route takes an alert.
func (r Route) matches(a *Alert) bool {
	kind := slices.Contains(r.Kinds, a.Kind) || a.Kind != KindLogin && slices.Contains(r.Kinds, "*")
	return kind && (r.Users == nil || a.Login != "" && slices.Contains(r.Users, a.Login))
}

// targets returns the route's targets.
func (r Route) targets() []string {
	if r.Channel == ChannelWebhook {
		return []string{TargetWebhook}
	}
	var out []string
	for _, t := range r.To {
		out = append(out, map[string]string{"user": TargetEmailUser, "security": TargetEmailSecurity}[t])
	}
	return out
}

// Targets returns where an alert goes under routes, each target once.
func Targets(routes []Route, a *Alert) []string {
	var out []string
	for _, r := range routes {
		if !r.matches(a) {
			continue
		}
		for _, t := range r.targets() {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	slices.Sort(out)
	return out
}

// RaisesLogins reports whether routes ask for login alerts (a route naming
// kind login): only then are they raised, every login being a lot of them.
func RaisesLogins(routes []Route) bool {
	return slices.ContainsFunc(routes, func(r Route) bool { return slices.Contains(r.Kinds, KindLogin) })
}

// Channels returns the channels routes use.
func Channels(routes []Route) (email, webhook bool) {
	for _, r := range routes {
		email = email || r.Channel == ChannelEmail
		webhook = webhook || r.Channel == ChannelWebhook
	}
	return email, webhook
}

// channelOf is a target's channel, the metrics' label.
func channelOf(target string) string {
	if target == TargetWebhook {
		return ChannelWebhook
	}
	return ChannelEmail
}

// CheckChannels checks that what the routes use is configured: email needs
// the SMTP server and a sender (and to=security the security mailbox), a
// webhook its URL and secret.
func CheckChannels(routes, smtpAddr, smtpFrom, mailbox, webhookURL, webhookSecretFile string) error {
	rs, err := ParseRoutes(routes)
	if err != nil {
		return err
	}
	for _, r := range rs {
		switch {
		case r.Channel == ChannelEmail && (smtpAddr == "" || smtpFrom == ""):
			return fmt.Errorf("route %q mails: it needs smtp_addr and smtp_from", r)
		case r.Channel == ChannelEmail && slices.Contains(r.To, "security") && mailbox == "":
			return fmt.Errorf("route %q mails the security mailbox: it needs alert_mailbox", r)
		case r.Channel == ChannelWebhook && (webhookURL == "" || webhookSecretFile == ""):
			return fmt.Errorf("route %q posts to a webhook: it needs webhook_url and webhook_secret_file", r)
		}
	}
	return nil
}
