// Package anchor makes and checks chain anchors: signed statements of a
// store's chain head ("this store's chain, which begins with genesis G,
// held N events ending with record R of hash H at time T"), published where
// someone holding the store file cannot rewrite them (the log, a file on
// another volume). A later `cdcaudit verify --anchor` compares the store
// with every anchor of its chain: a rewritten, truncated or replaced chain
// contradicts them, even though it is internally consistent.
//
// An anchor is one token, without spaces or quotes, so it can be found in
// any text that holds it — a JSON or text log line, syslog, a file of its
// own: cdcaudit-anchor.v1.<payload>.<signature>, both unpadded base64url;
// the payload is the JSON of Anchor, the signature Ed25519 over the payload
// bytes with the instance key it names.
package anchor

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/instancekey"
)

// Anchor is what an anchor states.
type Anchor struct {
	Time       time.Time `json:"time"`
	Genesis    string    `json:"genesis"`   // hash of the chain's genesis record: names the chain
	HeadID     string    `json:"head_id"`   // the last record of the chain
	HeadHash   string    `json:"head_hash"` // its hash
	Events     uint64    `json:"events"`
	Checkpoint string    `json:"checkpoint"`
	Key        string    `json:"key"` // the signing instance key (instancekey.FormatPublic)
}

// Signer signs anchors (an *instancekey.Key).
type Signer interface {
	Sign(msg []byte) []byte
	Public() string
}

const tokenPrefix = "cdcaudit-anchor.v1."

var tokenRE = regexp.MustCompile(`cdcaudit-anchor\.v1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)`)

// Sign returns a's token, signed by k (a.Key is set to k's public key).
func Sign(a Anchor, k Signer) string {
	a.Key = k.Public()
	payload, _ := json.Marshal(a)
	enc := base64.RawURLEncoding
	return tokenPrefix + enc.EncodeToString(payload) + "." + enc.EncodeToString(k.Sign(payload))
}

// Parse checks a token's signature and returns what it states.
func Parse(token string) (Anchor, error) {
	m := tokenRE.FindStringSubmatch(token)
	if m == nil || m[0] != token {
		return Anchor{}, fmt.Errorf("not an anchor token")
	}
	return parse(m[1], m[2])
}

func parse(payload64, sig64 string) (Anchor, error) {
	var a Anchor
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(payload64)
	sig, err2 := enc.DecodeString(sig64)
	if err1 != nil || err2 != nil || json.Unmarshal(payload, &a) != nil {
		return Anchor{}, fmt.Errorf("malformed anchor")
	}
	pub, err := instancekey.ParsePublic(a.Key)
	if err != nil {
		return Anchor{}, fmt.Errorf("anchor: %w", err)
	}
	if !ed25519.Verify(pub, payload, sig) {
		return Anchor{}, fmt.Errorf("the anchor's signature does not verify (forged or altered)")
	}
	return a, nil
}

// Find returns the anchors in r: every token in any line (a file of
// anchors, or a log). A token whose signature does not verify is an error
// naming its line: the file is not trustworthy as it is.
func Find(r io.Reader) ([]Anchor, error) {
	var out []Anchor
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		for _, m := range tokenRE.FindAllStringSubmatch(sc.Text(), -1) {
			a, err := parse(m[1], m[2])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			out = append(out, a)
		}
	}
	return out, sc.Err()
}

// Chain is what Check needs to know of a store whose chain verified.
type Chain struct {
	Genesis    string // hash of its genesis record ("" when it has none)
	Key        string // the data directory's instance key, "" when unknown
	Checkpoint uint64
	// Lookup returns the hash of the record id, when the chain holds it.
	Lookup func(id string) (hash string, ok bool)
	// Pruned, when set, returns the cut of the chain (which verified) under
	// which retention removed the record id, if it did.
	Pruned func(id string) (cut string, ok bool)
}

// Mine returns the anchors of the chain that begins with genesis, oldest
// first.
func Mine(anchors []Anchor, genesis string) []Anchor {
	var mine []Anchor
	for _, a := range anchors {
		if a.Genesis == genesis && genesis != "" {
			mine = append(mine, a)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].Time.Before(mine[j].Time) })
	return mine
}

// Check compares the chain with every anchor of it, oldest first, and
// returns the newest anchor, or the first contradiction: no anchor of this
// chain at all (the chain was replaced or wiped), an anchored record
// missing (records removed) or with another hash (the chain was rewritten),
// a checkpoint behind an anchored one (the store was rolled back), or an
// anchor signed by another key than the instance's. An anchored record
// that retention removed under a cut is not missing, provided an anchor of
// a later record covers the cut.
func Check(anchors []Anchor, c Chain) (newest Anchor, err error) {
	mine := Mine(anchors, c.Genesis)
	if len(mine) == 0 {
		if len(anchors) == 0 {
			return Anchor{}, fmt.Errorf("the file holds no anchor")
		}
		byKey := 0
		for _, a := range anchors {
			if c.Key != "" && a.Key == c.Key {
				byKey++
			}
		}
		if c.Genesis == "" {
			return Anchor{}, fmt.Errorf("the store has no genesis record (wiped?), and none of the %d anchors can be of it", len(anchors))
		}
		if byKey > 0 {
			return Anchor{}, fmt.Errorf("%d anchors signed by this instance's key name another chain than the store's (genesis %s): the store was replaced or wiped and restarted",
				byKey, short(c.Genesis))
		}
		return Anchor{}, fmt.Errorf("none of the %d anchors is of this store's chain (genesis %s)", len(anchors), short(c.Genesis))
	}
	for _, a := range mine {
		at := a.Time.UTC().Format(time.RFC3339)
		if c.Key != "" && a.Key != c.Key {
			return a, fmt.Errorf("the anchor of %s is signed by key %s, but the data directory's instance key is %s: the key was replaced",
				at, instancekey.Fingerprint(a.Key), instancekey.Fingerprint(c.Key))
		}
		h, ok := c.Lookup(a.HeadID)
		cut, pruned := "", false
		if !ok && c.Pruned != nil {
			cut, pruned = c.Pruned(a.HeadID)
		}
		switch {
		case pruned && !anchored(mine, c, cut):
			return a, fmt.Errorf("record %s, the chain head anchored at %s, was removed under cut %s, but no anchor covers that cut: a cut made after the newest anchor cannot be told from a forged one (verify the store once 'cdcaudit run' has stopped: it anchors its head)", a.HeadID, at, cut)
		case pruned:
			// Removed by retention under a cut that an anchor covers: its
			// hash went with it; the checkpoint is still checked below.
		case !ok:
			return a, fmt.Errorf("record %s, the chain head anchored at %s (%d events), is not in the store: records were removed", a.HeadID, at, a.Events)
		case h != a.HeadHash:
			return a, fmt.Errorf("record %s has hash %s, but its anchor of %s says %s: the chain was rewritten", a.HeadID, short(h), at, short(a.HeadHash))
		}
		if cp, err := audit.ParseLSN(a.Checkpoint); err == nil && c.Checkpoint < cp {
			return a, fmt.Errorf("the store's checkpoint %s is behind the one anchored at %s (%s): the store was rolled back",
				audit.FormatLSN(c.Checkpoint), at, a.Checkpoint)
		}
	}
	return mine[len(mine)-1], nil
}

// anchored reports whether an anchor of the chain names a record at or
// after the cut that the chain holds with its anchored hash: the cut was in
// the chain when that anchor was signed, so it is not a later forgery.
func anchored(mine []Anchor, c Chain, cut string) bool {
	for _, b := range mine {
		if b.HeadID < cut { // ids sort in chain order
			continue
		}
		if h, ok := c.Lookup(b.HeadID); ok && h == b.HeadHash {
			return true
		}
	}
	return false
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
