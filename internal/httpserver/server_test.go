package httpserver

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cdcaudit test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })

func TestServesTLS(t *testing.T) {
	cert, key, pool := selfSigned(t)
	s, err := Start(Options{Addr: "127.0.0.1:0", CertFile: cert, KeyFile: key, Handler: hello})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if !s.TLS() || !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("TLS %v, URL %s", s.TLS(), s.URL())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("%q over %+v", body, resp.TLS)
	}
	// Plain HTTP to a TLS port gets no answer from the handler.
	if resp, err := http.Get("http://" + s.Addr() + "/"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) == "hello" {
			t.Fatal("the TLS server answered plain HTTP")
		}
	}
}

func TestPlainHTTPBeyondLoopbackNeedsConsent(t *testing.T) {
	if _, err := Start(Options{Addr: "0.0.0.0:0", Handler: hello}); !errors.Is(err, ErrPlainHTTP) {
		t.Fatalf("plain HTTP on every interface without allow_plain_http: %v", err)
	}
	var logs bytes.Buffer
	s, err := Start(Options{Addr: "0.0.0.0:0", AllowPlain: true, Handler: hello, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	if !strings.Contains(logs.String(), "allow_plain_http") {
		t.Fatalf("the daemon did not say why it serves plain HTTP: %q", logs.String())
	}
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, ":1": false,
		"0.0.0.0:1": false, "192.0.2.1:1": false, "erp.example:1": false} {
		if IsLoopback(addr) != want {
			t.Errorf("IsLoopback(%s) = %v", addr, !want)
		}
	}
}

func TestValidateTLSFiles(t *testing.T) {
	cert, key, _ := selfSigned(t)
	if err := ValidateTLSFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	if err := ValidateTLSFiles("", ""); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{cert, ""}, {"", key}, {key, cert}, {cert, filepath.Join(t.TempDir(), "none")}} {
		if err := ValidateTLSFiles(pair[0], pair[1]); err == nil {
			t.Errorf("%v accepted", pair)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	h := LoopbackOnly(hello)
	for remote, want := range map[string]int{"127.0.0.1:5000": 200, "[::1]:5000": 200, "192.0.2.7:5000": 403, "junk": 403} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d, want %d", remote, w.Code, want)
		}
	}
}
