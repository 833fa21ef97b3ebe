package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// ErrPlainHTTP is the rule of allow_plain_http: a server reachable from
// other hosts serves TLS unless plain HTTP was asked for.
var ErrPlainHTTP = errors.New("binding beyond loopback without TLS sends API tokens, passwords and session cookies in clear")

// ValidateTLSFiles checks that cert and key are given together and hold a
// usable key pair (PEM).
func ValidateTLSFiles(cert, key string) error {
	switch {
	case cert == "" && key == "":
		return nil
	case cert == "" || key == "":
		return errors.New("give both the certificate and its key (tls_cert_file and tls_key_file), or neither")
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		return fmt.Errorf("not a usable certificate and key: %v", err)
	}
	return nil
}

// ValidatePlain is the rule of allow_plain_http: an address other than
// loopback needs TLS, or allow set.
func ValidatePlain(addr string, withTLS, allow bool) error {
	if withTLS || allow || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%s: %w: give tls_cert_file and tls_key_file, or set allow_plain_http: true (e.g. behind a TLS proxy on the same host)", addr, ErrPlainHTTP)
}

// IsLoopback says whether addr (host:port) binds to loopback only. An empty
// host, 0.0.0.0 and :: are every interface; a name other than localhost is
// not assumed to be loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Options are a server's settings.
type Options struct {
	Addr string
	// CertFile and KeyFile, both set, make it serve TLS (1.2 and later).
	CertFile, KeyFile string
	// AllowPlain lets it serve plain HTTP on an address beyond loopback.
	AllowPlain bool
	Handler    http.Handler
	Log        *slog.Logger
}

// Server is the daemon's HTTP server: metrics, health, the API.
type Server struct {
	srv  *http.Server
	addr string // the actual address (port 0 resolved)
	tls  bool
	done chan struct{}
}

// Start listens and serves in the background. The write timeout is long
// enough for a page of the API; a handler that streams (an export) lifts
// it for its own response (http.ResponseController).
func Start(o Options) (*Server, error) {
	withTLS := o.CertFile != "" || o.KeyFile != ""
	if err := ValidatePlain(o.Addr, withTLS, o.AllowPlain); err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if withTLS {
		if err := ValidateTLSFiles(o.CertFile, o.KeyFile); err != nil {
			return nil, err
		}
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, err
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		srv: &http.Server{
			Handler:           o.Handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			TLSConfig:         tlsConfig,
		},
		addr: ln.Addr().String(),
		tls:  tlsConfig != nil,
		done: make(chan struct{}),
	}
	if !s.tls && !IsLoopback(o.Addr) {
		log.Warn("serving plain HTTP beyond loopback because allow_plain_http is set: API tokens, passwords and session cookies cross the network in clear unless a TLS proxy on this host fronts it",
			"addr", s.addr)
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// TLS says whether it serves TLS.
func (s *Server) TLS() bool { return s.tls }

// URL is the server's base URL, for logs and links.
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// Shutdown stops it, waiting a few seconds for requests in flight.
func (s *Server) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
}

// LoopbackOnly answers clients connecting from a loopback address only
// (403 otherwise), whatever address the server listens on.
func LoopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "this answers loopback clients only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
