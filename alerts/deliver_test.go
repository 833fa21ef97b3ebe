package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/smtptest"
	"github.com/cdcaudit/cdcaudit/sink"
)

// storeRig is a real store written through its real writer, as the
// pipeline's StateSink writes it.
type storeRig struct {
	store *sink.Store
	w     *sink.Writer
}

func newStore(t *testing.T) *storeRig {
	st, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := sink.NewWriter(st, sink.WriterOptions{Queue: 16})
	t.Cleanup(func() { w.Close(); st.Close() })
	return &storeRig{store: st, w: w}
}

func (s *storeRig) state(ctx context.Context, recs []sink.StateRecord) error {
	if err := s.w.Submit(ctx, sink.Batch{State: recs}); err != nil {
		return err
	}
	return s.w.Flush(ctx)
}

func (s *storeRig) delivery(t *testing.T, id, target string) Delivery {
	t.Helper()
	var d Delivery
	s.store.LoadState(Bucket, func(k, v []byte) error {
		if string(k) == deliveryKey(id, target) {
			if err := json.Unmarshal(v, &d); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	})
	return d
}

type counts struct {
	mu     sync.Mutex
	n      map[string]int
	queued int
}

func (c *counts) AlertDelivered(channel, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[channel+"/"+result]++
}

func (c *counts) AlertsQueued(n int) { c.mu.Lock(); c.queued = n; c.mu.Unlock() }

func (c *counts) get(k string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.n[k] }

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func quiet() *slog.Logger            { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func mustRoutes(t *testing.T, s string) []Route {
	t.Helper()
	r, err := ParseRoutes(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var alice = Alert{ID: "new_device/s0123456789abcdef01234567", Kind: KindNewDevice, UserID: 6, Login: "alice",
	Session: "s0123456789abcdef01234567", IP: "198.51.100.23", Browser: "Safari", OS: "iOS", Device: "mobile",
	Country: "France", City: "Lyon", Events: []string{"0000000001000000/1"}, Sessions: []string{"s0123456789abcdef01234567"},
	Summary: "alice signed in from a new device"}

func queue(t *testing.T, s *storeRig, recs ...sink.StateRecord) {
	t.Helper()
	if err := s.state(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func address(user int64, email string) sink.StateRecord {
	b, _ := json.Marshal(addressRecord{Partner: user + 1, Email: email})
	return sink.StateRecord{Bucket: StateBucket, Key: keyAddress + pad(user), Value: b}
}

// A new-device alert mailed over STARTTLS with authentication, to the user
// and to the security mailbox, once each; the message says who, when,
// from where, and what to do.
func TestMailOnce(t *testing.T) {
	for _, mode := range []string{TLSStartTLS, TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			srv := smtptest.Start(t, mode, "cdcaudit", "s3cret-pass")
			s := newStore(t)
			clk := &clock{t: time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)}
			a := alice
			a.Time = clk.now().Add(-time.Minute)
			queue(t, s, Queue(a), address(6, "alice@example.com"))
			m, err := NewMailer(MailConfig{Addr: srv.Addr, TLS: mode, User: "cdcaudit", Password: "s3cret-pass",
				From: "cdcaudit@example.com", RootCAs: srv.Roots})
			if err != nil {
				t.Fatal(err)
			}
			c := &counts{}
			d, err := NewDeliverer(s.store, DelivererOptions{Routes: mustRoutes(t, "kind=new_device channel=email to=user,security"),
				Mailer: m, Mailbox: "security@example.com", Log: quiet(), Metrics: c, Now: clk.now})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := d.Round(context.Background(), s.state); err != nil {
					t.Fatal(err)
				}
			}
			msgs := srv.Messages()
			if len(msgs) != 2 {
				t.Fatalf("%d messages, want 2 (user, security)", len(msgs))
			}
			var to []string
			for _, msg := range msgs {
				to = append(to, msg.To...)
				text := string(msg.Data)
				for _, want := range []string{"Subject: [cdcaudit] New sign-in to alice from Safari on iOS", "alice (user 6)",
					"2026-12-03 06:59:00 UTC", "198.51.100.23", "Safari", "iOS", "mobile", "Lyon, France",
					"If it was not you", "Alert id: " + a.ID} {
					if !strings.Contains(text, want) && !(want == "If it was not you" && msg.To[0] == "security@example.com") {
						t.Errorf("the message to %v lacks %q:\n%s", msg.To, want, text)
					}
				}
				if strings.Contains(text, "s3cret-pass") {
					t.Error("the password is in the message")
				}
			}
			slices.Sort(to)
			if strings.Join(to, ",") != "alice@example.com,security@example.com" {
				t.Errorf("sent to %v", to)
			}
			if st := s.delivery(t, a.ID, TargetEmailUser); !st.OK || !st.At.Equal(clk.now()) {
				t.Errorf("delivery state %+v", st)
			}
			if c.get("email/ok") != 2 || c.queued != 0 {
				t.Errorf("metrics %v queued %d", c.n, c.queued)
			}
		})
	}
}

// The mail server is down: the failure is recorded, counted and retried
// with backoff; once it is up the alert is delivered, once.
func TestMailServerDownThenUp(t *testing.T) {
	srv := smtptest.Start(t, smtptest.StartTLS, "", "")
	srv.Stop()
	s := newStore(t)
	clk := &clock{t: time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)}
	a := alice
	a.Time = clk.now()
	queue(t, s, Queue(a))
	m, err := NewMailer(MailConfig{Addr: srv.Addr, From: "cdcaudit@example.com", RootCAs: srv.Roots, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := &counts{}
	d, err := NewDeliverer(s.store, DelivererOptions{Routes: mustRoutes(t, "kind=* channel=email"),
		Mailer: m, Mailbox: "security@example.com", Log: quiet(), Metrics: c, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	round := func() {
		t.Helper()
		if _, err := d.Round(context.Background(), s.state); err != nil {
			t.Fatal(err)
		}
	}
	round()
	st := s.delivery(t, a.ID, TargetEmailSecurity)
	if st.OK || st.Attempts != 1 || st.Error == "" || c.get("email/failed") != 1 || c.queued != 1 {
		t.Fatalf("after a failure: state %+v, metrics %v, queued %d", st, c.n, c.queued)
	}
	round() // within the backoff: not tried
	if c.get("email/failed") != 1 {
		t.Fatalf("retried within the backoff: %v", c.n)
	}
	clk.add(DefaultBackoff)
	round()
	if st := s.delivery(t, a.ID, TargetEmailSecurity); st.Attempts != 2 {
		t.Fatalf("after the backoff: state %+v", st)
	}
	if d.backoff(2) != 2*DefaultBackoff || d.backoff(30) != DefaultMaxBackoff {
		t.Errorf("backoff %v, %v", d.backoff(2), d.backoff(30))
	}
	srv.Restart()
	clk.add(2 * DefaultBackoff)
	round()
	round()
	clk.add(time.Hour)
	round()
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
	if st := s.delivery(t, a.ID, TargetEmailSecurity); !st.OK || st.Attempts != 3 {
		t.Errorf("state %+v", st)
	}
	if c.get("email/ok") != 1 || c.queued != 0 {
		t.Errorf("metrics %v queued %d", c.n, c.queued)
	}
}

// A webhook call is signed (verifiable, replay window), retried after a
// failed answer, and made once after success; the routes' user lists and
// the route's start decide what is sent.
func TestWebhook(t *testing.T) {
	secret := []byte("0123456789abcdef-webhook")
	var mu sync.Mutex
	var got []Alert
	fail := 1
	clk := &clock{t: time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := VerifySignature(secret, body, r.Header.Get(SignatureHeader), clk.now(), DefaultReplayWindow); err != nil {
			t.Errorf("signature: %v", err)
		}
		if err := VerifySignature(secret, append(body, ' '), r.Header.Get(SignatureHeader), clk.now(), DefaultReplayWindow); err == nil {
			t.Error("a changed body verifies")
		}
		if err := VerifySignature(secret, body, r.Header.Get(SignatureHeader), clk.now().Add(10*time.Minute), DefaultReplayWindow); err == nil {
			t.Error("a signature 10 minutes old verifies")
		}
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var a Alert
		if err := json.Unmarshal(body, &a); err != nil || r.Header.Get(AlertHeader) != a.ID {
			t.Errorf("body %s (%v), header %q", body, err, r.Header.Get(AlertHeader))
		}
		got = append(got, a)
	}))
	defer hs.Close()
	s := newStore(t)
	bypass := Alert{ID: "orm_bypass/0000000001000000/1", Kind: KindORMBypass, Time: clk.now(), Events: []string{"0000000001000000/1", "0000000001000000/3"},
		Summary: "2 changes to public.res_partner made outside the application (orm_bypass)"}
	old := bypass
	old.ID, old.Time = "orm_bypass/0000000000100000/1", clk.now().Add(-2*RouteGrace)
	bob := alice
	bob.ID, bob.Login, bob.Time = "new_device/sbob", "bob", clk.now()
	al := alice
	al.Time = clk.now()
	queue(t, s, Queue(bypass), Queue(old), Queue(bob), Queue(al))
	wh, err := NewWebhook(hs.URL+"/hook?token=abc", secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := &counts{}
	d, err := NewDeliverer(s.store, DelivererOptions{Routes: mustRoutes(t, "kind=orm_bypass channel=webhook; kind=new_device channel=webhook users=alice"),
		Webhook: wh, Log: quiet(), Metrics: c, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := d.Round(context.Background(), s.state); err != nil {
			t.Fatal(err)
		}
		clk.add(DefaultBackoff)
	}
	mu.Lock()
	defer mu.Unlock()
	var ids []string
	for _, a := range got {
		ids = append(ids, a.ID)
	}
	// In time order (the same): by id. The old one predates the route; bob is not routed.
	if want := alice.ID + "," + bypass.ID; strings.Join(ids, ",") != want {
		t.Fatalf("delivered %v, want %s", ids, want)
	}
	if len(got[1].Events) != 2 {
		t.Errorf("the orm_bypass alert lost its evidence: %+v", got[1])
	}
	if c.get("webhook/failed") != 1 || c.get("webhook/ok") != 2 {
		t.Errorf("metrics %v", c.n)
	}
}

// Failures for longer than GiveUpAfter end the retries; an unknown address
// is final at once.
func TestGiveUpAndNoAddress(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer hs.Close()
	srv := smtptest.Start(t, smtptest.StartTLS, "", "")
	s := newStore(t)
	clk := &clock{t: time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)}
	a := alice
	a.Time = clk.now()
	queue(t, s, Queue(a))
	wh, _ := NewWebhook(hs.URL, []byte("0123456789abcdef"), 0)
	m, _ := NewMailer(MailConfig{Addr: srv.Addr, From: "cdcaudit@example.com", RootCAs: srv.Roots})
	c := &counts{}
	d, err := NewDeliverer(s.store, DelivererOptions{Routes: mustRoutes(t, "kind=* channel=webhook; kind=new_device channel=email to=user"),
		Webhook: wh, Mailer: m, Log: quiet(), Metrics: c, Now: clk.now, GiveUpAfter: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := d.Round(context.Background(), s.state); err != nil {
			t.Fatal(err)
		}
		clk.add(DefaultMaxBackoff)
	}
	if st := s.delivery(t, a.ID, TargetWebhook); st.Final != ResultGaveUp || st.OK || !strings.Contains(st.Error, "500") {
		t.Errorf("webhook state %+v", st)
	}
	if st := s.delivery(t, a.ID, TargetEmailUser); st.Final != ResultNoAddress {
		t.Errorf("email state %+v", st)
	}
	if c.get("webhook/gave_up") != 1 || c.get("email/no_address") != 1 || c.queued != 0 || len(srv.Messages()) != 0 {
		t.Errorf("metrics %v, queued %d, %d mails", c.n, c.queued, len(srv.Messages()))
	}
	if n := c.get("webhook/failed"); n < 3 || n > 6 {
		t.Errorf("%d failed attempts in 2 hours with backoff from 30s", n)
	}
}

// Run starts, delivers and stops with its context.
func TestRunStops(t *testing.T) {
	var calls sync.WaitGroup
	calls.Add(1)
	var once sync.Once
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { once.Do(calls.Done) }))
	defer hs.Close()
	s := newStore(t)
	a := alice
	a.Time = time.Now()
	queue(t, s, Queue(a))
	wh, _ := NewWebhook(hs.URL, []byte("0123456789abcdef"), 0)
	d, err := NewDeliverer(s.store, DelivererOptions{Routes: mustRoutes(t, "kind=* channel=webhook"), Webhook: wh, Log: quiet(), Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx, s.state) }()
	calls.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewDelivererNeedsItsChannels(t *testing.T) {
	s := newStore(t)
	for _, routes := range []string{"kind=* channel=email", "kind=* channel=webhook", "kind=* channel=email to=user"} {
		if _, err := NewDeliverer(s.store, DelivererOptions{Routes: mustRoutes(t, routes)}); err == nil {
			t.Errorf("%q without its channel configured: accepted", routes)
		}
	}
	if _, err := NewWebhook("ftp://x", []byte("0123456789abcdef"), 0); err == nil {
		t.Error("an ftp URL accepted")
	}
	if _, err := NewWebhook("https://x/hook", []byte("short"), 0); err == nil {
		t.Error("a short secret accepted")
	}
	if err := ValidateSMTP("mail.example.com:25", TLSNone); err == nil {
		t.Error("no TLS beyond loopback accepted")
	}
	if err := ValidateSMTP("127.0.0.1:25", TLSNone); err != nil {
		t.Error(err)
	}
}

func TestParseRoutes(t *testing.T) {
	r, err := ParseRoutes(" kind=new_device,login channel=email to=user,security users=alice,bob ;; kind=* channel=webhook;")
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 2 || r[0].String() != "kind=new_device,login channel=email to=user,security users=alice,bob" ||
		r[1].String() != "kind=* channel=webhook" {
		t.Fatalf("routes %v", r)
	}
	if !RaisesLogins(r) || RaisesLogins(r[1:]) {
		t.Error("RaisesLogins")
	}
	al, login := alice, alice
	login.Kind = KindLogin
	if got := Targets(r, &al); strings.Join(got, ",") != "email-security,email-user,webhook" {
		t.Errorf("targets %v", got)
	}
	carol := alice
	carol.Login = "carol"
	if got := Targets(r, &carol); strings.Join(got, ",") != "webhook" {
		t.Errorf("carol's targets %v", got)
	}
	login.Login = "carol"
	if got := Targets(r, &login); len(got) != 0 {
		t.Errorf("* takes login: %v", got)
	}
	if r, _ := ParseRoutes("kind=* channel=email users=all"); r[0].Users != nil || r[0].To[0] != "security" {
		t.Errorf("defaults: %+v", r[0])
	}
	for _, bad := range []string{"kind=new_device", "channel=email", "kind=nope channel=email", "kind=* channel=sms",
		"kind=* channel=webhook to=user", "kind=* channel=email to=boss", "kind=* kind=* channel=email",
		"kind=* channel=email colour=red", "kind= channel=email", "kind=*,,login channel=email", "kind channel=email"} {
		if _, err := ParseRoutes(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	if r, err := ParseRoutes(""); err != nil || r != nil {
		t.Errorf("empty: %v %v", r, err)
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add("kind=new_device channel=email to=user,security; kind=orm_bypass channel=webhook")
	f.Add("kind=* channel=email users=alice")
	f.Fuzz(func(t *testing.T, s string) {
		routes, err := ParseRoutes(s)
		if err != nil {
			return
		}
		// What parses prints as something that parses to the same.
		var parts []string
		for _, r := range routes {
			parts = append(parts, r.String())
		}
		again, err := ParseRoutes(strings.Join(parts, ";"))
		if err != nil || len(again) != len(routes) {
			t.Fatalf("%q → %q: %v", s, parts, err)
		}
		for i := range again {
			if again[i].String() != routes[i].String() {
				t.Fatalf("%q → %q → %q", s, routes[i], again[i])
			}
		}
	})
}

func FuzzVerifySignature(f *testing.F) {
	secret := []byte("0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	f.Add([]byte(`{"id":"x"}`), Sign(secret, []byte(`{"id":"x"}`), now))
	f.Add([]byte(""), "t=1,v1=zz")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		err := VerifySignature(secret, body, header, now, DefaultReplayWindow)
		if err == nil && !bytes.Contains([]byte(header), []byte("v1=")) {
			t.Fatalf("verified without a signature: %q", header)
		}
		if err == nil && Sign(secret, body, now) != header && !strings.Contains(header, ",") {
			t.Fatalf("verified %q for a body it does not sign", header)
		}
	})
}

func TestCheckChannels(t *testing.T) {
	for _, tc := range []struct {
		routes, smtp, from, mailbox, url, secret string
		ok                                       bool
	}{
		{"", "", "", "", "", "", true},
		{"kind=* channel=email", "m:25", "a@b.c", "s@b.c", "", "", true},
		{"kind=* channel=email", "", "a@b.c", "s@b.c", "", "", false},
		{"kind=* channel=email to=user", "m:25", "a@b.c", "", "", "", true},
		{"kind=* channel=email to=user,security", "m:25", "a@b.c", "", "", "", false},
		{"kind=* channel=webhook", "", "", "", "https://x", "", false},
		{"kind=* channel=webhook", "", "", "", "https://x", "/f", true},
	} {
		if err := CheckChannels(tc.routes, tc.smtp, tc.from, tc.mailbox, tc.url, tc.secret); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc, err)
		}
	}
}
