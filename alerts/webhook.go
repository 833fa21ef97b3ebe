package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries a webhook call's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>".
const SignatureHeader = "X-Cdcaudit-Signature"

// AlertHeader carries the alert's id: the same on every retry, for the
// receiver to drop a call it has already taken.
const AlertHeader = "X-Cdcaudit-Alert"

// DefaultWebhookTimeout bounds one webhook call.
const DefaultWebhookTimeout = 10 * time.Second

// DefaultReplayWindow is how old a signature VerifySignature accepts.
const DefaultReplayWindow = 5 * time.Minute

// MinSecretLen is the shortest webhook secret accepted.
const MinSecretLen = 16

// Webhook posts alerts as JSON, signed.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
}

// NewWebhook returns a webhook posting to rawURL (http or https), signed
// with secret; timeout bounds one call (0: DefaultWebhookTimeout).
func NewWebhook(rawURL string, secret []byte, timeout time.Duration) (*Webhook, error) {
	if err := ValidateWebhookURL(rawURL); err != nil {
		return nil, err
	}
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("the webhook secret must have at least %d bytes", MinSecretLen)
	}
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	return &Webhook{url: rawURL, secret: secret, client: &http.Client{Timeout: timeout,
		// A redirect could carry the signed alert elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// ValidateWebhookURL accepts an absolute http or https URL.
func ValidateWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("not an http:// or https:// URL") // the URL may hold a token: not repeated
	}
	return nil
}

// Sign returns the signature header's value for body at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a signature header against the body as received,
// as a receiver does: the HMAC must match and t be within window of now
// (either way: clocks drift), so a captured call cannot be replayed later.
func VerifySignature(secret, body []byte, header string, now time.Time, window time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("malformed signature header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return fmt.Errorf("signature time %s is outside the replay window", time.Unix(sec, 0).UTC().Format(time.RFC3339))
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("signature mismatch")
}

// Send posts one alert. A 2xx answer is success; anything else an error
// that names neither the URL (it may hold a token) nor the secret.
func (w *Webhook) Send(ctx context.Context, a *Alert, now time.Time) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("webhook: cannot make the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cdcaudit")
	req.Header.Set(AlertHeader, a.ID)
	req.Header.Set(SignatureHeader, Sign(w.secret, body, now))
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return nil
}
