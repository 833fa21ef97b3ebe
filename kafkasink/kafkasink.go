// Package kafkasink delivers the audit trail to Kafka: every stored event,
// exactly as exported, as one Kafka record keyed by its source, table and
// primary key, so that one record's changes stay ordered in one partition.
//
// The sink is driven by the outbox, which tails the local store with the
// sink's own durable cursor and hands it batches of stored events; Deliver
// returns nil only when every record of the batch is acknowledged by the
// in-sync replicas (idempotent producer, acks=all), so the cursor never
// passes an event Kafka does not hold. Delivery is at least once: after a
// failure the outbox hands the batch again, and consumers deduplicate by the
// source and the event id (docs/kafka.md): several instances, each with its
// own source, may share a topic.
package kafkasink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/outbox"
)

// Name is the sink's name: the name of its cursor in the store, in metrics
// and in logs.
const Name = "kafka"

// Header names of every Kafka record the sink writes.
const (
	HeaderSource  = "source"  // the store's source: with id, the deduplication key
	HeaderID      = "id"      // the event id, unique within its source
	HeaderOp      = "op"      // insert, update, delete, truncate, snapshot; a chain record's: genesis, gap, slot_lost, cut
	HeaderTable   = "table"   // schema.table (cdcaudit.chain for a chain record)
	HeaderUser    = "user"    // the actor's login, or #<user_id>; absent when none
	HeaderSession = "session" // the actor's session pseudonym; absent when none
)

// SASL mechanisms (sink_kafka_sasl).
const (
	SASLNone        = ""
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Compression codecs (sink_kafka_compression).
const (
	CompressionZstd   = "zstd"
	CompressionLZ4    = "lz4"
	CompressionSnappy = "snappy"
	CompressionGzip   = "gzip"
	CompressionNone   = "none"

	DefaultCompression = CompressionZstd
)

// TLS modes (sink_kafka_tls): off, on (the system's certificate
// authorities) or the path of a PEM file of the authorities to trust.
const (
	TLSOff = "off"
	TLSOn  = "on"
)

// ChainSchema and ChainTable stand for {schema} and {table} for the chain
// records (genesis, gap, slot_lost, cut: no change of any table, but links
// of the hash chain, delivered so that a consumer can verify it); their
// record key is ChainSchema.ChainTable.
const (
	ChainSchema = "cdcaudit"
	ChainTable  = "chain"
)

// DefaultTopic is the topic template when none is configured: a topic per
// table.
const DefaultTopic = "cdcaudit.{schema}.{table}"

// DefaultDeliveryTimeout bounds how long a record may wait for its
// acknowledgement before Deliver gives up on the batch and returns an
// error (the outbox then retries it): a broker that is down shows as
// delivery errors, not as a silent stall.
const DefaultDeliveryTimeout = time.Minute

// Secret is a password: it formats as [redacted], so it never reaches a
// log line or an error by accident.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return "[redacted]" }

// Config configures the sink.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topic is a fixed topic name or a template with {source}, {schema}
	// and {table} (ValidateTopic); "" means DefaultTopic.
	Topic string
	// Source is the store's source (config key source): a header of every
	// record and the first part of its key.
	Source string
	// TLS is TLSOff (""), TLSOn, or the path of a PEM file of CA
	// certificates.
	TLS string
	// SASL is one of the SASL* mechanisms; User and Password go with it.
	SASL     string
	User     string
	Password Secret
	// Compression is one of the Compression* codecs; "" means
	// DefaultCompression.
	Compression string
	// DeliveryTimeout bounds one record's wait for its acknowledgement; 0
	// means DefaultDeliveryTimeout, negative means no bound (Deliver then
	// waits until its context ends).
	DeliveryTimeout time.Duration
	// ClientID is the Kafka client id ("" means cdcaudit).
	ClientID string
	// ExtraOpts are appended to the client options (tests: a logger).
	ExtraOpts []kgo.Opt
}

// ErrConfig marks an error that retrying does not cure: the configuration
// or the cluster's set-up must change (authentication or authorization
// refused, a topic that does not exist and is not created, an invalid topic
// name, a record larger than the broker accepts, a TLS handshake refused).
// Every other Deliver error is retriable: the outbox retries the batch.
var ErrConfig = errors.New("kafka sink: configuration")

// IsConfigError reports whether err is a configuration error (ErrConfig).
func IsConfigError(err error) bool { return errors.Is(err, ErrConfig) }

// Sink writes events to Kafka.
type Sink struct {
	cl     *kgo.Client
	topic  topicTemplate
	source string
	// sourceHeader is source's header value, shared by every record (the
	// client only reads it).
	sourceHeader []byte
	// healthy: the last Deliver was acknowledged. When it was not, the
	// next one first pings the brokers, so that a cluster that is down or
	// refuses the credentials fails the batch at once, not after the
	// delivery timeout.
	healthy atomic.Bool
}

// New validates cfg and makes the sink's producer. It does not connect:
// the first Deliver does (and Ping checks the brokers can be reached).
func New(cfg Config) (*Sink, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: no brokers", ErrConfig)
	}
	tt, err := parseTopic(cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	codec, err := compression(cfg.Compression)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	clientID := cfg.ClientID
	if clientID == "" {
		clientID = "cdcaudit"
	}
	timeout := cfg.DeliveryTimeout
	if timeout == 0 {
		timeout = DefaultDeliveryTimeout
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(clientID),
		// Idempotent (franz-go's default, kept: never
		// DisableIdempotentWrite) and acknowledged by every in-sync
		// replica.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		// Topics per table appear as tables do: ask the broker to create a
		// missing one (it does when auto.create.topics.enable is on; if not,
		// the records fail as UNKNOWN_TOPIC_OR_PARTITION: ErrConfig).
		kgo.AllowAutoTopicCreation(),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 of the key, as Kafka's Java clients
	}
	if timeout > 0 {
		opts = append(opts, kgo.RecordDeliveryTimeout(timeout))
	}
	tlsCfg, err := tlsConfig(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	mech, err := mechanism(cfg.SASL, cfg.User, cfg.Password)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	if cfg.Source == "" {
		return nil, fmt.Errorf("%w: no source: the records of several instances would be told apart by nothing", ErrConfig)
	}
	opts = append(opts, cfg.ExtraOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return &Sink{cl: cl, topic: tt, source: cfg.Source, sourceHeader: []byte(cfg.Source)}, nil
}

var _ outbox.Sink = (*Sink)(nil)

// Name returns the sink's name (Name).
func (s *Sink) Name() string { return Name }

// Ping checks that a broker answers (and accepts the credentials).
func (s *Sink) Ping(ctx context.Context) error {
	if err := s.cl.Ping(ctx); err != nil {
		return classify(err)
	}
	return nil
}

// Close ends the producer's connections.
func (s *Sink) Close() { s.cl.Close() }

// Deliver writes batch to Kafka and returns nil only when every record is
// acknowledged (acks=all). On error some records may have been written:
// the outbox delivers the batch again, and consumers drop the duplicates
// by id. A batch's records of one key are written in the batch's order.
func (s *Sink) Deliver(ctx context.Context, batch []outbox.Record) error {
	if len(batch) == 0 {
		return nil
	}
	if !s.healthy.Load() {
		if err := s.Ping(ctx); err != nil {
			return fmt.Errorf("kafka: brokers: %w", err)
		}
	}
	recs := make([]*kgo.Record, len(batch))
	for i := range batch {
		r, err := s.record(&batch[i])
		if err != nil {
			return err
		}
		recs[i] = r
	}
	// ProduceSync waits for records already sent even when ctx ends (an
	// idempotent producer cannot drop them without risking a gap), so a
	// cancelled ctx (shutdown) returns here at once and leaves them to the
	// client, which a later Deliver follows in order or Close ends.
	done := make(chan kgo.ProduceResults, 1)
	go func() { done <- s.cl.ProduceSync(ctx, recs...) }()
	var results kgo.ProduceResults
	select {
	case results = <-done:
	case <-ctx.Done():
		s.healthy.Store(false)
		return fmt.Errorf("kafka: %d records not acknowledged: %w", len(batch), ctx.Err())
	}
	var first error
	var failed int
	for _, res := range results {
		if res.Err != nil {
			failed++
			if first == nil || IsConfigError(res.Err) && !IsConfigError(first) {
				first = classify(res.Err)
				if first != nil && res.Record != nil {
					first = fmt.Errorf("topic %s: %w", res.Record.Topic, first)
				}
			}
		}
	}
	s.healthy.Store(first == nil)
	if first != nil {
		return fmt.Errorf("kafka: %d of %d records not acknowledged: %w", failed, len(batch), first)
	}
	return nil
}

// record makes the Kafka record of one stored record.
func (s *Sink) record(r *outbox.Record) (*kgo.Record, error) {
	if r.Chain {
		return s.chainRecord(r)
	}
	t, err := audit.ParseTerms(r.JSON)
	if err != nil {
		return nil, fmt.Errorf("kafka: record %s: %w", r.ID, err)
	}
	topic, err := s.topic.name(s.source, t.Schema, t.Table)
	if err != nil {
		return nil, fmt.Errorf("%w: record %s: %v", ErrConfig, r.ID, err)
	}
	key, err := RecordKey(r.JSON, s.source, t.Schema, t.Table)
	if err != nil {
		return nil, fmt.Errorf("kafka: record %s: %w", r.ID, err)
	}
	h := make([]kgo.RecordHeader, 0, 6)
	h = append(h,
		kgo.RecordHeader{Key: HeaderSource, Value: s.sourceHeader},
		kgo.RecordHeader{Key: HeaderID, Value: []byte(r.ID)},
		kgo.RecordHeader{Key: HeaderOp, Value: []byte(t.Op.String())},
		kgo.RecordHeader{Key: HeaderTable, Value: []byte(t.Schema + "." + t.Table)})
	if t.User != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderUser, Value: []byte(t.User)})
	}
	if t.Session != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderSession, Value: []byte(t.Session)})
	}
	return &kgo.Record{Topic: topic, Key: key, Value: r.JSON, Headers: h}, nil
}

// chainRecord makes the Kafka record of a chain record: in the topic of
// ChainSchema.ChainTable, keyed <source>/cdcaudit.chain (one partition per
// source: in order).
func (s *Sink) chainRecord(r *outbox.Record) (*kgo.Record, error) {
	topic, err := s.topic.name(s.source, ChainSchema, ChainTable)
	if err != nil {
		return nil, fmt.Errorf("%w: record %s: %v", ErrConfig, r.ID, err)
	}
	var head struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(r.JSON, &head); err != nil {
		return nil, fmt.Errorf("kafka: chain record %s: %v", r.ID, err)
	}
	name := ChainSchema + "." + ChainTable
	return &kgo.Record{Topic: topic, Key: []byte(s.source + "/" + name), Value: r.JSON, Headers: []kgo.RecordHeader{
		{Key: HeaderSource, Value: s.sourceHeader},
		{Key: HeaderID, Value: []byte(r.ID)},
		{Key: HeaderOp, Value: []byte(head.Op)},
		{Key: HeaderTable, Value: []byte(name)},
	}}, nil
}

// RecordKey is the Kafka record key of a stored event of source: the
// source, a slash, schema.table, a colon, and the event's "key" member
// exactly as stored (its primary key or replica identity columns,
// canonical JSON), e.g. erp_a/public.sale_order:{"id":42}. An event
// without a key (a truncate, a table without one) is keyed
// source/schema.table alone. An update that changed the key is keyed by its
// new key.
func RecordKey(event []byte, source, schema, table string) ([]byte, error) {
	raw, err := keyMember(event)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(source)+len(schema)+len(table)+3+len(raw))
	b = append(b, source...)
	b = append(b, '/')
	b = append(b, schema...)
	b = append(b, '.')
	b = append(b, table...)
	if raw == nil {
		return b, nil
	}
	b = append(b, ':')
	return append(b, raw...), nil
}

// keyMember returns the raw "key" member of a stored event, nil when it is
// null. The members come in a fixed order and every string before "key" is
// escaped, so its first bare `,"key":` is the member.
func keyMember(event []byte) ([]byte, error) {
	const member = `,"key":`
	i := bytes.Index(event, []byte(member))
	if i < 0 {
		return nil, errors.New(`stored event without a "key" member`)
	}
	dec := json.NewDecoder(bytes.NewReader(event[i+len(member):]))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf(`stored event's "key": %v`, err)
	}
	if string(raw) == "null" {
		return nil, nil
	}
	return raw, nil
}

// classify wraps err with ErrConfig when retrying cannot cure it.
func classify(err error) error {
	if err == nil || IsConfigError(err) {
		return err
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.SaslAuthenticationFailed, kerr.UnsupportedSaslMechanism, kerr.IllegalSaslState,
			kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed,
			kerr.TransactionalIDAuthorizationFailed,
			kerr.UnknownTopicOrPartition, kerr.UnknownTopicID, kerr.InvalidTopicException,
			kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
			kerr.InvalidRequiredAcks, kerr.UnsupportedCompressionType,
			kerr.UnsupportedForMessageFormat, kerr.PolicyViolation:
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return err
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recHdr tls.RecordHeaderError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) || errors.As(err, &recHdr) {
		return fmt.Errorf("%w: TLS: %w", ErrConfig, err)
	}
	return err
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", CompressionZstd:
		return kgo.ZstdCompression(), nil
	case CompressionLZ4:
		return kgo.Lz4Compression(), nil
	case CompressionSnappy:
		return kgo.SnappyCompression(), nil
	case CompressionGzip:
		return kgo.GzipCompression(), nil
	case CompressionNone:
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression %q: want zstd, lz4, snappy, gzip or none", name)
}

// ValidateCompression checks a sink_kafka_compression value.
func ValidateCompression(name string) error { _, err := compression(name); return err }

// ValidateSASL checks a sink_kafka_sasl value.
func ValidateSASL(m string) error {
	switch m {
	case SASLNone, SASLPlain, SASLScramSHA256, SASLScramSHA512:
		return nil
	}
	return fmt.Errorf("SASL mechanism %q: want plain, scram-sha-256 or scram-sha-512", m)
}

func mechanism(m, user string, password Secret) (sasl.Mechanism, error) {
	if err := ValidateSASL(m); err != nil {
		return nil, err
	}
	if m == SASLNone {
		if user != "" {
			return nil, errors.New("a SASL user without a SASL mechanism")
		}
		return nil, nil
	}
	if user == "" || password == "" {
		return nil, fmt.Errorf("SASL %s needs a user and a password", m)
	}
	switch m {
	case SASLPlain:
		return plain.Auth{User: user, Pass: string(password)}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: user, Pass: string(password)}.AsSha256Mechanism(), nil
	default:
		return scram.Auth{User: user, Pass: string(password)}.AsSha512Mechanism(), nil
	}
}

// ValidateTLS checks a sink_kafka_tls value: off, on, or a readable PEM
// file of CA certificates.
func ValidateTLS(v string) error { _, err := tlsConfig(v); return err }

func tlsConfig(v string) (*tls.Config, error) {
	switch v {
	case "", TLSOff:
		return nil, nil
	case TLSOn:
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	pem, err := os.ReadFile(v)
	if err != nil {
		return nil, fmt.Errorf("TLS CA file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLS CA file %s: no PEM certificate in it", v)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// ValidateBrokers checks a sink_kafka_brokers list: host:port each.
func ValidateBrokers(brokers []string) error {
	for _, b := range brokers {
		i := strings.LastIndexByte(b, ':')
		if i <= 0 || i == len(b)-1 || strings.ContainsAny(b, " /") {
			return fmt.Errorf("broker %q: want host:port", b)
		}
	}
	return nil
}
