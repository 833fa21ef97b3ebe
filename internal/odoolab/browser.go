package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"sync/atomic"
)

// A browser talks to Odoo the way the web client does: JSON-RPC posts with
// its own cookie jar (one Odoo session), its own User-Agent, and the client
// IP in X-Forwarded-For — which Odoo's proxy_mode honours only when
// X-Forwarded-Host comes with it.
type browser struct {
	name string // for the driver's own log: "alice/chrome"
	ua   string
	ip   string
	base string
	hc   *http.Client
	uid  int64
}

var rpcID atomic.Int64

func newBrowser(base, name, ua, ip string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{name: name, ua: ua, ip: ip, base: base, hc: &http.Client{
		Jar: jar,
		// The web client follows redirects itself; the driver wants to see them.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// rpcError is Odoo's JSON-RPC error object: the request reached Odoo and
// Odoo refused it (wrong password, access error, validation error).
type rpcError struct {
	Message string `json:"message"`
	Data    struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	} `json:"data"`
}

func (e *rpcError) Error() string { return e.Data.Name + ": " + e.Data.Message }

func (b *browser) request(method, path string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, b.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", b.ua)
	req.Header.Set("X-Forwarded-For", b.ip)
	req.Header.Set("X-Forwarded-Host", "erp.example.test")
	req.Header.Set("X-Forwarded-Proto", "https")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp, out, err
}

// call posts a JSON-RPC call and decodes its result into out (if not nil).
func (b *browser) call(path string, params any, out any) error {
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": rpcID.Add(1), "params": params})
	if err != nil {
		return err
	}
	resp, raw, err := b.request("POST", path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", b.name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %.300s", b.name, path, resp.StatusCode, raw)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *rpcError       `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s %s: %w: %.300s", b.name, path, err, raw)
	}
	if env.Error != nil {
		return env.Error
	}
	if out != nil {
		return json.Unmarshal(env.Result, out)
	}
	return nil
}

// login is the login form's JSON-RPC: /web/session/authenticate.
func (b *browser) login(login, password string) error {
	var res struct {
		UID int64 `json:"uid"`
	}
	if err := b.call("/web/session/authenticate", map[string]any{"db": "erp", "login": login, "password": password}, &res); err != nil {
		return err
	}
	b.uid = res.UID
	return nil
}

// open loads the web client after a login, as the browser's redirect does.
func (b *browser) open() error {
	resp, _, err := b.request("GET", "/odoo", nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s GET /odoo: HTTP %d", b.name, resp.StatusCode)
	}
	return nil
}

func (b *browser) logout() error {
	return b.call("/web/session/destroy", map[string]any{}, nil)
}

// kw calls /web/dataset/call_kw/<model>/<method>, as views and fields do.
func (b *browser) kw(model, method string, args []any, kwargs map[string]any, out any) error {
	return b.callModel("/web/dataset/call_kw/", model, method, args, kwargs, out)
}

// button calls /web/dataset/call_button/<model>/<method>, as a form's
// type="object" buttons do.
func (b *browser) button(model, method string, ids []int64, ctx map[string]any, out any) error {
	return b.callModel("/web/dataset/call_button/", model, method, []any{ids}, map[string]any{"context": ctx}, out)
}

func (b *browser) callModel(prefix, model, method string, args []any, kwargs map[string]any, out any) error {
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	// The web client's user context, plus what the caller adds.
	ctx := map[string]any{"lang": "en_US", "tz": "Europe/Brussels", "uid": b.uid}
	given, _ := kwargs["context"].(map[string]any)
	for k, v := range given {
		ctx[k] = v
	}
	kwargs["context"] = ctx
	err := b.call(prefix+model+"/"+method, map[string]any{"model": model, "method": method, "args": args, "kwargs": kwargs}, out)
	if err != nil {
		return fmt.Errorf("%s %s.%s: %w", b.name, model, method, err)
	}
	return nil
}

// save is a form's Save: web_save on the record (ids empty: a new record),
// returning the saved record's id.
func (b *browser) save(model string, ids []int64, vals map[string]any, ctx map[string]any) (int64, error) {
	var recs []struct {
		ID int64 `json:"id"`
	}
	err := b.kw(model, "web_save", []any{ids, vals}, map[string]any{"context": ctx, "specification": map[string]any{"display_name": map[string]any{}}}, &recs)
	if err != nil {
		return 0, err
	}
	if len(recs) != 1 {
		return 0, fmt.Errorf("%s %s.web_save: %d records back", b.name, model, len(recs))
	}
	return recs[0].ID, nil
}

// searchRead returns records' fields as generic maps.
func (b *browser) searchRead(model string, domain []any, fields []string) ([]map[string]any, error) {
	var out []map[string]any
	err := b.kw(model, "search_read", []any{}, map[string]any{"domain": domain, "fields": fields}, &out)
	return out, err
}

// xmlid resolves module.name to a database id by reading ir.model.data.
func (b *browser) xmlid(module, name string) (int64, error) {
	recs, err := b.searchRead("ir.model.data", []any{[]any{"module", "=", module}, []any{"name", "=", name}}, []string{"res_id"})
	if err != nil {
		return 0, err
	}
	if len(recs) != 1 {
		return 0, fmt.Errorf("xmlid %s.%s: %d records", module, name, len(recs))
	}
	return int64(recs[0]["res_id"].(float64)), nil
}
