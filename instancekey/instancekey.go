// Package instancekey holds a cdcaudit instance's Ed25519 signing key:
// created on first start in the data directory (readable by its owner
// only), it signs what the instance publishes about its store (chain
// anchors), so a statement can be told from a forgery.
package instancekey

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FileName is the key's file in the data directory.
const FileName = "instance.key"

// Key is an instance's signing key.
type Key struct{ priv ed25519.PrivateKey }

// LoadOrCreate reads dir's instance key, creating it (0600) when there is
// none. A key file that exists but cannot be read as a key is an error,
// never silently replaced: anchors signed by the old key would no longer
// match.
func LoadOrCreate(dir string) (*Key, error) {
	k, err := Load(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("instance key: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("instance key: write %s: %w", path, err)
	}
	return &Key{priv: priv}, nil
}

// Load reads dir's instance key; the error wraps fs.ErrNotExist when there
// is none.
func Load(dir string) (*Key, error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("instance key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("instance key: %s holds no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("instance key: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("instance key: %s is not an Ed25519 key", path)
	}
	return &Key{priv: priv}, nil
}

// Sign signs msg.
func (k *Key) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// Public returns the public key in its text form (see ParsePublic).
func (k *Key) Public() string { return FormatPublic(k.priv.Public().(ed25519.PublicKey)) }

const publicPrefix = "ed25519:"

// FormatPublic writes a public key as "ed25519:" and its unpadded
// base64url encoding.
func FormatPublic(pub ed25519.PublicKey) string {
	return publicPrefix + base64.RawURLEncoding.EncodeToString(pub)
}

// ParsePublic is the inverse of FormatPublic.
func ParsePublic(s string) (ed25519.PublicKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, publicPrefix))
	if err != nil || !strings.HasPrefix(s, publicPrefix) || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("malformed public key %q (want ed25519:<base64url>)", s)
	}
	return ed25519.PublicKey(b), nil
}

// Fingerprint is a short name of a public key for messages: the first 16
// hex digits of the SHA-256 of its text form.
func Fingerprint(public string) string {
	h := sha256.Sum256([]byte(public))
	return hex.EncodeToString(h[:8])
}

// Derive returns a 32-byte secret for one purpose, derived from the key
// (HMAC-SHA256 of the purpose under its seed): another key kept as safe as
// this one, without another file.
func (k *Key) Derive(purpose string) []byte {
	m := hmac.New(sha256.New, k.priv.Seed())
	m.Write([]byte(purpose))
	return m.Sum(nil)
}
