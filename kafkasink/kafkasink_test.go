package kafkasink

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cdcaudit/cdcaudit/outbox"
)

var tables = []string{"sale_order", "res_partner", "account_move"}

func batches(recs []outbox.Record, size int) [][]outbox.Record {
	var out [][]outbox.Record
	for len(recs) > 0 {
		n := min(size, len(recs))
		out = append(out, recs[:n])
		recs = recs[n:]
	}
	return out
}

// TestDeliver: every event lands once, in its table's topic, keyed by its
// table and key, the stored bytes as value, the headers right; per key in
// commit order.
func TestDeliver(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, Config{Brokers: c.ListenAddrs()})
	want := trail(t, 300, tables, 7)
	for _, b := range batches(want, 37) {
		if err := s.Deliver(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, c.ListenAddrs(), nil, topicsOf(tables)...)
	if len(got) != len(want) {
		t.Fatalf("%d records in Kafka, want %d", len(got), len(want))
	}
	if dups := checkDelivered(t, want, got, perTable); dups != 0 {
		t.Fatalf("%d duplicates without any failure", dups)
	}
	// The key spreads records over partitions (4 per topic here), and one
	// key's records all sit in one partition.
	parts := map[string]map[int32]bool{}
	perKey := map[string]int32{}
	for _, g := range got {
		if parts[g.Topic] == nil {
			parts[g.Topic] = map[int32]bool{}
		}
		parts[g.Topic][g.Partition] = true
		if p, ok := perKey[string(g.Key)]; ok && p != g.Partition {
			t.Fatalf("key %s in partitions %d and %d", g.Key, p, g.Partition)
		}
		perKey[string(g.Key)] = g.Partition
	}
	for topic, ps := range parts {
		if len(ps) < 2 {
			t.Errorf("topic %s: all records in one partition %v", topic, ps)
		}
	}
}

// TestDeliverOneTopic: a fixed topic holds every table; per key order
// holds among the tables' keys sharing its partitions; the record of a key
// keeps the table in its key, so equal primary keys of two tables are two
// records.
func TestDeliverOneTopic(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, Config{Brokers: c.ListenAddrs(), Topic: "cdcaudit", Compression: CompressionLZ4})
	want := trail(t, 200, tables, 5)
	for _, b := range batches(want, 50) {
		if err := s.Deliver(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, c.ListenAddrs(), nil, "cdcaudit")
	if len(got) != len(want) {
		t.Fatalf("%d records in Kafka, want %d", len(got), len(want))
	}
	checkDelivered(t, want, got, func(string, string) string { return "cdcaudit" })
	if !strings.HasPrefix(string(got[0].Key), testSource+"/public.") {
		t.Fatalf("key %q", got[0].Key)
	}
}

// deliverAll is what the outbox does with a sink: each batch until it is
// acknowledged, in order. It reports each acknowledged batch on acked and
// counts the failed attempts; a configuration error ends it.
func deliverAll(ctx context.Context, s *Sink, bs [][]outbox.Record, acked chan<- int, failures *atomic.Int64, firstFail chan<- error) error {
	var once sync.Once
	for i, b := range bs {
		for {
			err := s.Deliver(ctx, b)
			if err == nil {
				break
			}
			failures.Add(1)
			once.Do(func() { firstFail <- err })
			if IsConfigError(err) || ctx.Err() != nil {
				return err
			}
		}
		acked <- i
	}
	close(acked)
	return nil
}

// dialFailures is a franz-go hook that reports the first failed broker
// connection and counts them: the client has seen the outage.
type dialFailures struct {
	n     atomic.Int64
	first chan struct{}
	once  sync.Once
}

func (d *dialFailures) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		d.n.Add(1)
		d.once.Do(func() { close(d.first) })
	}
}

// TestBrokerOutage: the whole cluster goes down while batches are being
// delivered and comes back (same ports, same data directory). Nothing is
// acknowledged that Kafka does not hold: the batch in flight waits (or
// fails and is delivered again), and once the cluster is back every event
// is there, in order per key after dedup by id.
func TestBrokerOutage(t *testing.T) {
	dir := t.TempDir()
	opts := []kfake.Opt{kfake.NumBrokers(3), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4), kfake.DataDir(dir)}
	c1, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	addrs := c1.ListenAddrs()
	var ports []int
	for _, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	dials := &dialFailures{first: make(chan struct{})}
	s := newSink(t, Config{Brokers: addrs, DeliveryTimeout: time.Second, ExtraOpts: []kgo.Opt{kgo.WithHooks(dials)}})
	want := trail(t, 600, tables, 9)
	bs := batches(want, 25)

	acked := make(chan int, len(bs))
	firstFail := make(chan error, 1)
	var failures atomic.Int64
	done := make(chan error, 1)
	go func() { done <- deliverAll(context.Background(), s, bs, acked, &failures, firstFail) }()

	for i := range acked {
		if i == 3 {
			break
		}
	}
	c1.Close() // the outage, while the next batches are in flight
	<-dials.first
	ackedDuring := len(acked)

	c2, err := kfake.NewCluster(append(opts, kfake.Ports(ports...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for range acked {
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-firstFail:
		if IsConfigError(err) {
			t.Fatalf("an outage classified as a configuration error: %v", err)
		}
		t.Logf("a Deliver while down: %v", err)
	default:
	}
	got := readAll(t, c2.ListenAddrs(), nil, topicsOf(tables)...)
	dups := checkDelivered(t, want, got, perTable)
	t.Logf("%d events, %d records read, %d duplicates, %d failed Deliver calls, %d failed dials, %d batches acknowledged after the outage began",
		len(want), len(got), dups, failures.Load(), dials.n.Load(), ackedDuring)
}

// TestLeaderChange: partitions' leaders move between brokers while batches
// are delivered, and brokers answer NOT_LEADER_FOR_PARTITION: nothing is
// lost, per key order holds.
func TestLeaderChange(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, Config{Brokers: c.ListenAddrs(), DeliveryTimeout: -1})
	want := trail(t, 600, tables, 9)
	bs := batches(want, 20)
	// First batches create the topics.
	if err := s.Deliver(context.Background(), bs[0]); err != nil {
		t.Fatal(err)
	}
	notLeader := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: 6})

	acked := make(chan int, len(bs))
	firstFail := make(chan error, 1)
	var failures atomic.Int64
	done := make(chan error, 1)
	go func() { done <- deliverAll(context.Background(), s, bs[1:], acked, &failures, firstFail) }()

	moves := 0
	for i := range acked {
		if i%3 != 0 {
			continue
		}
		// Move every partition's leader to the next broker while the
		// following batches are in flight.
		for _, topic := range topicsOf(tables) {
			for p := range int32(4) {
				l := c.LeaderFor(topic, p)
				if l < 0 {
					continue
				}
				if err := c.MoveTopicPartition(topic, p, (l+1)%3); err != nil {
					t.Fatal(err)
				}
				moves++
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h := notLeader.Hits(); h != 6 {
		t.Fatalf("NOT_LEADER answered %d times, want 6", h)
	}
	got := readAll(t, c.ListenAddrs(), nil, topicsOf(tables)...)
	dups := checkDelivered(t, want, got, perTable)
	t.Logf("%d leader moves, %d failed attempts, %d duplicates", moves, failures.Load(), dups)
	if moves == 0 {
		t.Fatal("no leader moved")
	}
}

// TestSASL: each mechanism authenticates against a cluster that requires
// it; a wrong password is a configuration error that does not show the
// password.
func TestSASL(t *testing.T) {
	for _, tc := range []struct{ mech, kfakeMech string }{
		{SASLPlain, "PLAIN"}, {SASLScramSHA256, "SCRAM-SHA-256"}, {SASLScramSHA512, "SCRAM-SHA-512"},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			const user, pass = "cdcaudit", "c0rrect-h0rse-battery"
			c := newCluster(t, kfake.EnableSASL(), kfake.Superuser(tc.kfakeMech, user, pass))
			want := trail(t, 20, tables, 3)
			s := newSink(t, Config{Brokers: c.ListenAddrs(), SASL: tc.mech, User: user, Password: pass})
			if err := s.Deliver(context.Background(), want); err != nil {
				t.Fatal(err)
			}
			mech, err := mechanism(tc.mech, user, pass)
			if err != nil {
				t.Fatal(err)
			}
			consumerAuth := []kgo.Opt{kgo.SASL(mech)}
			got := readAll(t, c.ListenAddrs(), consumerAuth, topicsOf(tables)...)
			checkDelivered(t, want, got, perTable)

			const wrong = "wr0ng-pa55w0rd-xyz"
			bad := newSink(t, Config{Brokers: c.ListenAddrs(), SASL: tc.mech, User: user, Password: wrong, DeliveryTimeout: -1})
			// A real broker answers SASL_AUTHENTICATION_FAILED (a
			// configuration error: TestClassify); kfake closes the
			// connection. Either way nothing is delivered and the error
			// does not show the password.
			err = bad.Deliver(context.Background(), want[:1])
			if err == nil {
				t.Fatal("a wrong password delivered")
			}
			if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), pass) {
				t.Fatalf("the error shows the password: %v", err)
			}
			t.Logf("wrong password: %v", err)
		})
	}
}

// TestConfigErrors: what New refuses, and a password that never formats.
func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Brokers: []string{"k:9092"}},
		{Brokers: []string{"k:9092"}, Source: "erp", Topic: "cdcaudit.{database}"},
		{Brokers: []string{"k:9092"}, Topic: "cdc audit"},
		{Brokers: []string{"k:9092"}, Topic: "cdcaudit.{table"},
		{Brokers: []string{"k:9092"}, Compression: "brotli"},
		{Brokers: []string{"k:9092"}, SASL: "gssapi", User: "u", Password: "p"},
		{Brokers: []string{"k:9092"}, SASL: SASLPlain, User: "u"},
		{Brokers: []string{"k:9092"}, User: "u", Password: "p"},
		{Brokers: []string{"k:9092"}, TLS: filepath.Join(t.TempDir(), "missing.pem")},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) accepted", cfg)
		} else if !IsConfigError(err) {
			t.Errorf("New(%+v): %v is not ErrConfig", cfg, err)
		}
	}
	cfg := Config{Brokers: []string{"k:9092"}, Password: "hunter2"}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, cfg); strings.Contains(out, "hunter2") {
			t.Errorf("%s of a Config shows the password: %s", f, out)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ValidateTLS(empty); err == nil {
		t.Error("a CA file without a certificate accepted")
	}
}

// TestUnknownTopic: a topic that does not exist and that the cluster does
// not create is a configuration error, and nothing is acknowledged.
func TestUnknownTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := newSink(t, Config{Brokers: c.ListenAddrs(), Topic: "missing"})
	err = s.Deliver(context.Background(), trail(t, 3, tables, 1))
	if !IsConfigError(err) {
		t.Fatalf("unknown topic: %v", err)
	}
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("unknown topic: %v does not say so", err)
	}
}

// TestClassify: the errors retrying cannot cure are ErrConfig, the others
// not (real error values of kerr, net and crypto/x509).
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err    error
		config bool
	}{
		{kerr.SaslAuthenticationFailed, true},
		{kerr.TopicAuthorizationFailed, true},
		{kerr.UnknownTopicOrPartition, true},
		{kerr.MessageTooLarge, true},
		{fmt.Errorf("produce: %w", kerr.ClusterAuthorizationFailed), true},
		{x509.UnknownAuthorityError{}, true},
		{kerr.NotLeaderForPartition, false},
		{kerr.RequestTimedOut, false},
		{kerr.NotEnoughReplicas, false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{kgo.ErrRecordTimeout, false},
		{context.Canceled, false},
	} {
		if got := IsConfigError(classify(tc.err)); got != tc.config {
			t.Errorf("classify(%v): configuration %v, want %v", tc.err, got, tc.config)
		}
		if !errors.Is(classify(tc.err), tc.err) {
			t.Errorf("classify(%v) lost the cause", tc.err)
		}
	}
}

// TestDeliverCancelledWhileDown: with the cluster gone and records in
// flight, a cancelled Deliver (the daemon stopping) returns; Close then
// ends the producer.
func TestDeliverCancelledWhileDown(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	dials := &dialFailures{first: make(chan struct{})}
	s, err := New(Config{Brokers: c.ListenAddrs(), Source: testSource, DeliveryTimeout: -1, ExtraOpts: []kgo.Opt{kgo.WithHooks(dials)}})
	if err != nil {
		t.Fatal(err)
	}
	recs := trail(t, 40, tables, 3)
	if err := s.Deliver(context.Background(), recs[:20]); err != nil {
		t.Fatal(err)
	}
	c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- s.Deliver(ctx, recs[20:]) }()
	<-dials.first // the client has met the outage
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Deliver: %v", err)
	}
	s.Close()
}

// TestTwoSourcesShareATopic: two instances (sources) deliver the same ids
// into one topic; their records are told apart by the source header and
// key, so a consumer deduplicating on (source, id) reads both trails whole.
// The topic template's {source} gives each its own topics.
func TestTwoSourcesShareATopic(t *testing.T) {
	c := newCluster(t)
	want := trail(t, 120, tables, 4) // the same ids for both: positions in two WALs
	for _, source := range []string{"erp_a", "erp_b"} {
		s := newSink(t, Config{Brokers: c.ListenAddrs(), Topic: "shared", Source: source})
		for _, b := range batches(want, 40) {
			if err := s.Deliver(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := readAll(t, c.ListenAddrs(), nil, "shared")
	if len(got) != 2*len(want) {
		t.Fatalf("%d records in Kafka, want %d", len(got), 2*len(want))
	}
	for _, source := range []string{"erp_a", "erp_b"} {
		if dups := checkDeliveredFrom(t, source, want, got, func(string, string) string { return "shared" }); dups != 0 {
			t.Fatalf("%s: %d duplicates", source, dups)
		}
	}

	s := newSink(t, Config{Brokers: c.ListenAddrs(), Topic: "audit.{source}.{table}", Source: "erp.b-2"})
	if err := s.Deliver(context.Background(), want[:30]); err != nil {
		t.Fatal(err)
	}
	topic := func(_, table string) string { return "audit.erp.b-2." + table }
	var topics []string
	for _, tb := range tables {
		topics = append(topics, topic("public", tb))
	}
	got = readAll(t, c.ListenAddrs(), nil, topics...)
	if len(got) != 30 {
		t.Fatalf("%d records in the source's topics, want 30", len(got))
	}
	checkDeliveredFrom(t, "erp.b-2", want[:30], got, topic)
}
