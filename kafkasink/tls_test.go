package kafkasink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testCA makes a certificate authority and a broker certificate it signs
// for 127.0.0.1; it returns the broker's TLS configuration and the path of
// the CA's PEM file.
func testCA(t *testing.T) (*tls.Config, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cdcaudit test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}, caFile
}

// TestTLS: with the CA file, the sink delivers over TLS (and SCRAM inside
// it); trusting only the system's authorities, the broker's certificate is
// refused: a configuration error, nothing delivered.
func TestTLS(t *testing.T) {
	serverTLS, caFile := testCA(t)
	const user, pass = "cdcaudit", "tls-and-scram-pw"
	c := newCluster(t, kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", user, pass))
	want := trail(t, 30, tables, 4)
	s := newSink(t, Config{Brokers: c.ListenAddrs(), TLS: caFile, SASL: SASLScramSHA256, User: user, Password: pass})
	if err := s.Deliver(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	clientTLS, err := tlsConfig(caFile)
	if err != nil {
		t.Fatal(err)
	}
	mech, err := mechanism(SASLScramSHA256, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, c.ListenAddrs(), []kgo.Opt{kgo.DialTLSConfig(clientTLS), kgo.SASL(mech)}, topicsOf(tables)...)
	checkDelivered(t, want, got, perTable)

	untrusted := newSink(t, Config{Brokers: c.ListenAddrs(), TLS: TLSOn, SASL: SASLScramSHA256, User: user, Password: pass})
	err = untrusted.Deliver(context.Background(), want[:1])
	if !IsConfigError(err) {
		t.Fatalf("an untrusted broker certificate: %v, want a configuration error", err)
	}
	t.Logf("untrusted: %v", err)
}
