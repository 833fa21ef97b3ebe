package sessionctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/sessions"
)

// webhookBody is what the session_end_webhook receives.
type webhookBody struct {
	Action  string `json:"action"` // end_session
	Session string `json:"session"`
	UserID  int64  `json:"user_id,omitempty"`
	Login   string `json:"login,omitempty"`
	AskedBy string `json:"asked_by"`
}

// webhook asks the application to end the session: 2xx ends it (ok), 404
// and 410 say it was not there (not_found), anything else fails.
func (c *Controller) webhook(ctx context.Context, s sessions.Session, by Requester) (bool, error) {
	body, _ := json.Marshal(webhookBody{Action: Action, Session: s.ID, UserID: s.UserID, Login: s.Login, AskedBy: by.String()})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.Webhook, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("the URL does not parse")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cdcaudit")
	if len(c.cfg.WebhookKey) > 0 {
		req.Header.Set(alerts.SignatureHeader, alerts.Sign(c.cfg.WebhookKey, body, c.cfg.Now()))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("no answer: %w", unwrapURL(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return true, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return false, nil
	}
	return false, fmt.Errorf("answered %d", resp.StatusCode)
}

// unwrapURL drops the URL from a client error: it may carry a secret.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
