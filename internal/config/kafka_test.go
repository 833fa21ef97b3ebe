package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKafkaSink: the sink_kafka_* keys resolve to the sink's
// configuration, the password read from its file and never shown; bad
// combinations are errors naming the key.
func TestKafkaSink(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.KafkaSink(); ok || err != nil {
		t.Fatalf("no brokers: a Kafka sink (%v)", err)
	}

	pw := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pw, []byte("s3cr3t-kafka-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = load(t, []string{"--dsn", "postgres://u@db/erp_a", "--sink-kafka-brokers", "k1:9092,k2:9092", "--sink-kafka-topic", "audit",
		"--sink-kafka-sasl", "scram-sha-256", "--sink-kafka-user", "cdc", "--sink-kafka-password-file", pw,
		"--sink-kafka-compression", "lz4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err != nil {
		t.Fatal(err)
	}
	k, ok, err := c.KafkaSink()
	if !ok || err != nil {
		t.Fatalf("KafkaSink: %v %v", ok, err)
	}
	if fmt.Sprint(k.Brokers) != "[k1:9092 k2:9092]" || k.Source != "erp_a" || k.Topic != "audit" || k.SASL != "scram-sha-256" ||
		k.User != "cdc" || string(k.Password) != "s3cr3t-kafka-pw" || k.Compression != "lz4" || k.TLS != "off" {
		t.Fatalf("KafkaSink() = %+v", k)
	}
	if s := fmt.Sprintf("%+v %#v", k, k); strings.Contains(s, "s3cr3t") {
		t.Fatalf("the sink's configuration prints its password: %s", s)
	}

	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"--sink-kafka-brokers", "k1"}, KeySinkKafkaBrokers},
		{[]string{"--sink-kafka-topic", "cdcaudit.{db}"}, KeySinkKafkaTopic},
		{[]string{"--sink-kafka-compression", "brotli"}, KeySinkKafkaCompression},
		{[]string{"--sink-kafka-sasl", "gssapi"}, KeySinkKafkaSASL},
		{[]string{"--sink-kafka-sasl", "plain", "--sink-kafka-user", "u"}, KeySinkKafkaPasswordFile},
		{[]string{"--sink-kafka-user", "u", "--sink-kafka-password-file", pw}, KeySinkKafkaPasswordFile},
	} {
		if _, err := load(t, tc.args, nil); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.key)
		}
	}
	c, err = load(t, []string{"--sink-kafka-brokers", "k1:9092", "--sink-kafka-tls", filepath.Join(t.TempDir(), "none.pem")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err == nil || !strings.Contains(err.Error(), KeySinkKafkaTLS) {
		t.Errorf("a missing CA file: %v", err)
	}
}
