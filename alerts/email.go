package alerts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// SMTP TLS modes (smtp_tls).
const (
	TLSStartTLS = "starttls" // plain connection, then STARTTLS (required)
	TLSImplicit = "implicit" // TLS from the first byte (port 465)
	TLSNone     = "none"     // no TLS: only to a server on the loopback interface
)

// DefaultSMTPTimeout bounds one mail's delivery.
const DefaultSMTPTimeout = 30 * time.Second

// MailConfig says how to reach the SMTP server.
type MailConfig struct {
	Addr     string // host:port
	TLS      string // TLSStartTLS (default), TLSImplicit or TLSNone
	User     string // "": no authentication
	Password string // read from smtp_password_file, never configured inline
	From     string // the sender's address
	// RootCAs verifies the server's certificate (nil: the system's).
	RootCAs *x509.CertPool
	Timeout time.Duration // 0: DefaultSMTPTimeout
}

// ValidateTLSMode accepts starttls, implicit or none.
func ValidateTLSMode(mode string) error {
	switch mode {
	case TLSStartTLS, TLSImplicit, TLSNone:
		return nil
	}
	return fmt.Errorf("%q is not a TLS mode (want starttls, implicit or none)", mode)
}

// ValidateSMTP checks a server address with its TLS mode: host:port, and
// no TLS only to a loopback address (credentials and alerts would cross the
// network in clear).
func ValidateSMTP(addr, mode string) error {
	if err := ValidateTLSMode(mode); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: bad port", addr)
	}
	if mode == TLSNone {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("smtp_tls none is only for a server on the loopback interface, not %s", host)
		}
	}
	return nil
}

// ValidateAddress accepts one plain mail address (alice@example.com).
func ValidateAddress(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("%q is not a mail address (want name@domain)", s)
	}
	return nil
}

// Mailer sends alerts by mail.
type Mailer struct {
	cfg        MailConfig
	host, port string
}

// NewMailer checks cfg and returns a mailer.
func NewMailer(cfg MailConfig) (*Mailer, error) {
	if cfg.TLS == "" {
		cfg.TLS = TLSStartTLS
	}
	if err := ValidateSMTP(cfg.Addr, cfg.TLS); err != nil {
		return nil, err
	}
	if err := ValidateAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("smtp_from: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSMTPTimeout
	}
	m := &Mailer{cfg: cfg}
	m.host, m.port, _ = net.SplitHostPort(cfg.Addr)
	return m, nil
}

func (m *Mailer) client() (*gomail.Client, error) {
	port, _ := strconv.Atoi(m.port)
	opts := []gomail.Option{gomail.WithPort(port), gomail.WithTimeout(m.cfg.Timeout),
		gomail.WithTLSConfig(&tls.Config{ServerName: m.host, RootCAs: m.cfg.RootCAs, MinVersion: tls.VersionTLS12})}
	switch m.cfg.TLS {
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if m.cfg.User != "" {
		auth := gomail.SMTPAuthPlain
		if m.cfg.TLS == TLSNone {
			auth = gomail.SMTPAuthPlainNoEnc // loopback only (ValidateSMTP)
		}
		opts = append(opts, gomail.WithSMTPAuth(auth), gomail.WithUsername(m.cfg.User), gomail.WithPassword(m.cfg.Password))
	}
	return gomail.NewClient(m.host, opts...)
}

// Send mails one alert to one address. target names the copy (the user's
// or the security mailbox's) in the message id, which is the same for
// every attempt: a mail client shows a copy sent again after a crash once.
func (m *Mailer) Send(ctx context.Context, to string, target string, a *Alert) error {
	if err := ValidateAddress(to); err != nil {
		return err
	}
	msg := gomail.NewMsg()
	if err := msg.From(m.cfg.From); err != nil {
		return fmt.Errorf("smtp_from: %w", err)
	}
	if err := msg.To(to); err != nil {
		return err
	}
	msg.Subject(subject(a))
	msg.SetBodyString(gomail.TypeTextPlain, body(a, target))
	sum := sha256.Sum256([]byte(a.ID + "\x00" + target))
	domain := "cdcaudit.invalid"
	if _, d, ok := strings.Cut(m.cfg.From, "@"); ok {
		domain = d
	}
	msg.SetMessageIDWithValue(hex.EncodeToString(sum[:16]) + "@" + domain)
	msg.SetDate()
	c, err := m.client()
	if err != nil {
		return err
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return scrub(err, m.cfg.Password)
	}
	return nil
}

// scrub keeps the password out of an error, whatever a library put there.
func scrub(err error, secret string) error {
	if secret != "" && strings.Contains(err.Error(), secret) {
		return errors.New(strings.ReplaceAll(err.Error(), secret, "[redacted]"))
	}
	return err
}

// subject is a mail's subject line.
func subject(a *Alert) string {
	who := a.Login
	if who == "" && a.UserID > 0 {
		who = "user " + strconv.FormatInt(a.UserID, 10)
	}
	var s string
	switch a.Kind {
	case KindNewDevice:
		s = "New sign-in to " + who + " from " + orUnknown(a.Browser) + " on " + orUnknownOS(a.OS)
	case KindLogin:
		s = "Sign-in to " + who
	case KindORMBypass:
		s = "A change made outside the application"
	default:
		s = a.Summary
	}
	return clipLine("[cdcaudit] " + s)
}

func orUnknownOS(s string) string {
	if s == "" {
		return "an unknown system"
	}
	return s
}

// clipLine makes one header-safe line of at most 200 bytes.
func clipLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		cut := 197
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// body is a mail's text: what happened, who, when, from where, and what
// to do if it was not them.
func body(a *Alert, target string) string {
	var b strings.Builder
	b.WriteString(clipLine(a.Summary) + "\n\n")
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%-10s %s\n", label+":", clipLine(value))
		}
	}
	who := a.Login
	if a.UserID > 0 {
		who = strings.TrimSpace(who + " (user " + strconv.FormatInt(a.UserID, 10) + ")")
	}
	line("Who", who)
	line("When", a.Time.UTC().Format("2006-01-02 15:04:05 MST"))
	line("IP", a.IP)
	line("Browser", a.Browser)
	line("OS", a.OS)
	line("Device", a.Device)
	line("Location", Place(a.City, a.Country))
	line("Session", a.Session)
	line("Rule", a.Rule)
	if len(a.Events) > 0 {
		line("Events", strings.Join(a.Events[:min(len(a.Events), 10)], ", ")+more(len(a.Events), 10))
	}
	if len(a.Sessions) > 0 && !(len(a.Sessions) == 1 && a.Sessions[0] == a.Session) {
		line("Sessions", strings.Join(a.Sessions[:min(len(a.Sessions), 10)], ", ")+more(len(a.Sessions), 10))
	}
	for _, k := range sortedKeys(a.Detail) {
		line(k, a.Detail[k])
	}
	b.WriteString("\n")
	switch {
	case target == TargetEmailUser && (a.Kind == KindNewDevice || a.Kind == KindLogin):
		b.WriteString("If this was you, there is nothing to do.\n\n" +
			"If it was not you: change your password at once, then tell your administrator\n" +
			"or security team and give them the alert id below; they can end the session\n" +
			"(cdcaudit sessions end " + a.Session + ") and check what it did.\n")
	case a.Kind == KindNewDevice || a.Kind == KindLogin:
		b.WriteString("If the user did not sign in, end the session (cdcaudit sessions end " + a.Session + "),\n" +
			"have the password changed and review what the session did\n" +
			"(cdcaudit export --session " + a.Session + ").\n")
	default:
		b.WriteString("Review the evidence (cdcaudit export, cdcaudit alerts, or the API).\n")
	}
	b.WriteString("\nAlert id: " + a.ID + "\n")
	return b.String()
}

func more(n, shown int) string {
	if n > shown {
		return fmt.Sprintf(" and %d more", n-shown)
	}
	return ""
}

// ReadSecretFile reads a secret (smtp_password_file, webhook_secret_file):
// a regular file of at most 64 KiB, surrounding white space trimmed, at
// least minLen bytes. Errors name the file, never its content.
func ReadSecretFile(path string, minLen int) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 64<<10 {
		return nil, fmt.Errorf("%s: not a regular file of at most 64 KiB", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) < max(minLen, 1) {
		return nil, fmt.Errorf("%s: the secret has %d bytes, want at least %d", path, len(b), max(minLen, 1))
	}
	return b, nil
}
