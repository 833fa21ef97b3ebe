// Package manifest makes and checks the signed manifest of an export
// file: which events it holds (the filter, their count, the first and last
// id and the chain values around them), the file's SHA-256, when it was
// made, and the instance's Ed25519 key with its signature over all of it.
// With it, a file can be proved complete, unaltered and from the instance,
// offline, by someone who trusts the instance's public key.
//
// A Recorder computes the manifest while the export streams through it: it
// hashes the bytes written and notes the events the export hands on, in
// constant memory, without a second pass over the file.
//
// The file is indented JSON (Marshal). The signature is Ed25519 over
// SigningBytes: the line "cdcaudit.export-manifest.v1" and the manifest's
// compact JSON without its signature member, members in the order of the
// struct, as Go's encoding/json writes them (lists never null).
package manifest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/export"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Version names the manifest's format; it is its first member and the
// first line of what is signed.
const Version = "cdcaudit.export-manifest.v1"

// MaxSize bounds a manifest file: Parse refuses a larger one.
const MaxSize = 1 << 20

// Signer signs manifests (an *instancekey.Key).
type Signer interface {
	Sign(msg []byte) []byte
	Public() string // instancekey.FormatPublic
}

// Filter is the query an export ran, as given: the flags of 'cdcaudit
// export' and the parameters of the HTTP export. "" and empty lists are
// no filter.
type Filter struct {
	Since   string   `json:"since"` // RFC 3339, UTC
	Until   string   `json:"until"`
	Tables  []string `json:"tables"`
	Ops     []string `json:"ops"`
	User    string   `json:"user"`    // a login, or #ID
	Session string   `json:"session"` // a session pseudonym
	Record  string   `json:"record"`  // TABLE:KEY, schema-qualified (audit.RecordRef.String)
	Flag    string   `json:"flag"`
}

// FilterOf is the filter of q.
func FilterOf(q sink.Query) Filter {
	f := Filter{Tables: slices.Clone(q.Tables), User: q.User, Session: q.Session, Flag: q.Flag}
	if !q.Since.IsZero() {
		f.Since = q.Since.UTC().Format(time.RFC3339Nano)
	}
	if !q.Until.IsZero() {
		f.Until = q.Until.UTC().Format(time.RFC3339Nano)
	}
	for _, op := range q.Ops {
		f.Ops = append(f.Ops, op.String())
	}
	if q.Record != nil {
		f.Record = q.Record.String()
	}
	return f.normal()
}

// normal makes nil lists empty: the canonical encoding has no null lists.
func (f Filter) normal() Filter {
	if f.Tables == nil {
		f.Tables = []string{}
	}
	if f.Ops == nil {
		f.Ops = []string{}
	}
	return f
}

// String is the filter as the flags of 'cdcaudit export', or "none".
func (f Filter) String() string {
	var parts []string
	add := func(flag, v string) {
		if v != "" {
			parts = append(parts, "--"+flag+" "+v)
		}
	}
	add("since", f.Since)
	add("until", f.Until)
	add("table", strings.Join(f.Tables, ","))
	add("op", strings.Join(f.Ops, ","))
	add("user", f.User)
	add("session", f.Session)
	add("record", f.Record)
	add("flag", f.Flag)
	if len(parts) == 0 {
		return "none (every event)"
	}
	return strings.Join(parts, " ")
}

// Manifest describes one export file.
type Manifest struct {
	Version string `json:"manifest"` // the constant Version
	Format  string `json:"format"`   // jsonl, csv or xlsx
	// Source is the trail the events are from (their source member): a
	// daemon recording several databases exports one source at a time.
	// Omitted when empty, so that a manifest made before sources existed
	// still verifies.
	Source string `json:"source,omitempty"`
	Filter Filter `json:"filter"`
	Events uint64 `json:"events"`
	// The first and last event of the file ("" when it holds none), and
	// the chain values around them: the first one's prev_hash and the last
	// one's hash. In a store whose chain verifies, the file's events lie
	// between these two links.
	FirstID       string `json:"first_id"`
	LastID        string `json:"last_id"`
	FirstPrevHash string `json:"first_prev_hash"`
	LastHash      string `json:"last_hash"`
	Bytes         int64  `json:"bytes"`
	SHA256        string `json:"sha256"`    // of the file, hex
	Made          string `json:"made"`      // when the export began, RFC 3339 UTC
	Key           string `json:"key"`       // the signing instance key (instancekey.FormatPublic)
	Signature     string `json:"signature"` // Ed25519 over SigningBytes, unpadded base64url
}

// SigningBytes is what the signature covers: everything but the
// signature, canonically encoded.
func (m Manifest) SigningBytes() []byte {
	m.Signature = ""
	m.Filter = m.Filter.normal()
	type unsigned struct {
		Manifest
		Signature string `json:"signature,omitempty"` // shadows Manifest.Signature
	}
	b, err := json.Marshal(unsigned{Manifest: m})
	if err != nil {
		panic(err) // strings and numbers only
	}
	return append([]byte(Version+"\n"), b...)
}

// Digest names the manifest's content: the SHA-256 (hex) of its
// SigningBytes, whatever the file's layout (what an access log records of
// an export).
func (m Manifest) Digest() string {
	h := sha256.Sum256(m.SigningBytes())
	return hex.EncodeToString(h[:])
}

// Sign returns m signed by k (its Key set to k's public key).
func Sign(k Signer, m Manifest) Manifest {
	m.Version, m.Key, m.Filter = Version, k.Public(), m.Filter.normal()
	m.Signature = base64.RawURLEncoding.EncodeToString(k.Sign(m.SigningBytes()))
	return m
}

// ErrSignature is returned by VerifySignature for a manifest whose
// signature does not verify with the key it names.
var ErrSignature = errors.New("the manifest's signature does not verify with the key it names: the manifest was altered after it was signed")

// VerifySignature checks m's signature with the key m names: it says the
// manifest is as that key's holder signed it, not who holds the key.
func (m *Manifest) VerifySignature() error {
	pub, err := instancekey.ParsePublic(m.Key)
	if err != nil {
		return fmt.Errorf("manifest: key: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(m.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("manifest: the signature is not an Ed25519 signature")
	}
	if !ed25519.Verify(pub, m.SigningBytes(), sig) {
		return ErrSignature
	}
	return nil
}

// Marshal returns the manifest file's content: indented JSON and a
// newline.
func (m Manifest) Marshal() []byte {
	m.Filter = m.Filter.normal()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

var (
	hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)
	eventID = regexp.MustCompile(`^[0-9A-F]{16}-[0-9]{6}$`)
)

// Parse reads a manifest file (untrusted: at most MaxSize bytes, no member
// it does not know, every value checked). It does not check the signature
// (VerifySignature).
func Parse(b []byte) (*Manifest, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("manifest: %d bytes, more than a manifest holds (%d)", len(b), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: not a cdcaudit export manifest: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("manifest: not a cdcaudit export manifest: more after its JSON object")
	}
	if m.Version != Version {
		return nil, fmt.Errorf("manifest: %q is not a manifest version this cdcaudit reads (want %s)", m.Version, Version)
	}
	if !slices.Contains(export.Formats, m.Format) {
		return nil, fmt.Errorf("manifest: unknown format %q", m.Format)
	}
	if m.Source != "" && audit.ValidSource(m.Source) != nil {
		return nil, fmt.Errorf("manifest: source %q is not a source's name", m.Source)
	}
	if !hexHash.MatchString(m.SHA256) {
		return nil, fmt.Errorf("manifest: sha256 %q is not a SHA-256 in hex", m.SHA256)
	}
	if m.Bytes < 0 {
		return nil, fmt.Errorf("manifest: bytes %d", m.Bytes)
	}
	ends := []string{m.FirstID, m.LastID, m.FirstPrevHash, m.LastHash}
	switch {
	case m.Events == 0 && strings.Join(ends, "") != "":
		return nil, fmt.Errorf("manifest: no events, but a first or last event")
	case m.Events > 0 && (!eventID.MatchString(m.FirstID) || !eventID.MatchString(m.LastID)):
		return nil, fmt.Errorf("manifest: first_id %q or last_id %q is not an event id", m.FirstID, m.LastID)
	case m.Events > 0 && (!hexHash.MatchString(m.FirstPrevHash) || !hexHash.MatchString(m.LastHash)):
		return nil, fmt.Errorf("manifest: first_prev_hash or last_hash is not a chain value (64 hex digits)")
	case m.Events > 0 && m.FirstID > m.LastID:
		return nil, fmt.Errorf("manifest: first_id %s is after last_id %s", m.FirstID, m.LastID)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Made); err != nil {
		return nil, fmt.Errorf("manifest: made %q is not an RFC 3339 time", m.Made)
	}
	for _, t := range []string{m.Filter.Since, m.Filter.Until} {
		if _, err := time.Parse(time.RFC3339Nano, t); t != "" && err != nil {
			return nil, fmt.Errorf("manifest: filter time %q is not an RFC 3339 time", t)
		}
	}
	if _, err := instancekey.ParsePublic(m.Key); err != nil {
		return nil, fmt.Errorf("manifest: key: %w", err)
	}
	m.Filter = m.Filter.normal()
	return &m, nil
}

// Recorder passes an export through to its writer and records what the
// manifest states: the bytes written (their count and SHA-256) and the
// events (their count, the first and the last). Events are what
// export.Observe hands to Event.
type Recorder struct {
	w                   io.Writer
	sum                 hash.Hash
	bytes               int64
	events              uint64
	firstID, lastID     string
	firstPrev, lastHash audit.Hash
	source              []byte // the events' source member, as stored
}

// NewRecorder returns a Recorder writing to w.
func NewRecorder(w io.Writer) *Recorder { return &Recorder{w: w, sum: sha256.New()} }

// Write writes p to the writer; what it accepted is counted and hashed.
func (r *Recorder) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	r.sum.Write(p[:n])
	r.bytes += int64(n)
	return n, err
}

// Event records one event written (a stored record, as the store hands
// it on: its hash already checked).
func (r *Recorder) Event(record []byte) error {
	id, ok := recordID(record)
	prev, h, linked := audit.Links(record)
	if !ok || !linked {
		return fmt.Errorf("manifest: a record without an id or chain links: %w", audit.ErrMalformed)
	}
	var source []byte
	if h, ok := audit.RecordHead(record); ok {
		source = h.Source
	}
	if r.events == 0 {
		r.firstID, r.firstPrev = id, prev
	}
	// A store holds one source: events of two in one export are not one
	// trail's. Events stored before sources existed carry none, and an
	// upgraded store holds both kinds.
	switch {
	case source == nil:
	case r.source == nil:
		r.source = bytes.Clone(source)
	case !bytes.Equal(source, r.source):
		return fmt.Errorf("manifest: event %s is of source %s, an earlier one of %s: %w", id, source, r.source, audit.ErrMalformed)
	}
	r.events++
	r.lastID, r.lastHash = id, h
	return nil
}

// recordID reads a record's id (its first member) without parsing it.
func recordID(record []byte) (string, bool) {
	const p = `{"id":"`
	if !bytes.HasPrefix(record, []byte(p)) {
		return "", false
	}
	end := bytes.IndexByte(record[len(p):], '"')
	if end < 0 {
		return "", false
	}
	return string(record[len(p) : len(p)+end]), true
}

// Manifest returns the unsigned manifest of what was written so far:
// call it once the export is complete.
func (r *Recorder) Manifest(format string, f Filter, made time.Time) Manifest {
	m := Manifest{Version: Version, Format: format, Filter: f.normal(), Events: r.events,
		Bytes: r.bytes, SHA256: hex.EncodeToString(r.sum.Sum(nil)), Made: made.UTC().Format(time.RFC3339Nano)}
	if r.events > 0 {
		m.FirstID, m.LastID = r.firstID, r.lastID
		m.FirstPrevHash, m.LastHash = r.firstPrev.String(), r.lastHash.String()
		m.Source = audit.Head{Source: r.source}.SourceName()
	}
	return m
}

// Export writes the events of src that q selects to w in format, as
// export.WriteContext does, and returns the export's manifest signed by k.
// On an error the manifest is of no use (the export is incomplete).
func Export(ctx context.Context, w io.Writer, src export.Source, q sink.Query, format string, k Signer) (Manifest, error) {
	if q.Desc || q.Limit != 0 || q.Cursor != "" {
		return Manifest{}, errors.New("manifest: an export is every event the filter selects, in commit order (no order, limit or cursor)")
	}
	made := time.Now()
	rec := NewRecorder(w)
	if _, err := export.WriteContext(ctx, rec, export.Observe(src, rec.Event), q, format); err != nil {
		return Manifest{}, err
	}
	return Sign(k, rec.Manifest(format, FilterOf(q), made)), nil
}
