package auth

import (
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReadSignIn: any body is refused or read as exactly one way in,
// within the bounds.
func FuzzReadSignIn(f *testing.F) {
	for _, s := range []string{
		`{"login":"bob","password":"x"}`, `{"login":"bob","password":"x","totp":"123456"}`,
		`{"token":"cdca_abc"}`, `{"once":"abc"}`, `{"token":"a","once":"b"}`, `{"token":"a","login":"b"}`,
		`{"once":""}`, `{"token":null}`, `{}`, `[]`, `{"login":"a\u0000","password":"b"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/api/v1/signin", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := readSignIn(httptest.NewRecorder(), r)
		if err != nil {
			return
		}
		modes := 0
		for _, set := range []bool{req.Token != "", req.Once != "", req.Login != "" || req.Password != "" || req.TOTP != ""} {
			if set {
				modes++
			}
		}
		switch {
		case modes != 1:
			t.Fatalf("%q read as %+v", body, req)
		case req.Token != "" || req.Once != "":
			if len(req.Token) > maxBearer || len(req.Once) > maxBearer {
				t.Fatalf("%q: over the bound", body)
			}
		case req.Login == "" || req.Password == "" || len(req.Login) > maxLogin || !utf8.ValidString(req.Login) || len(req.Password) > maxPassword:
			t.Fatalf("%q read as %+v", body, req)
		}
	})
}
