package auth

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// Odoo stores passwords through passlib's CryptContext(['pbkdf2_sha512',
// 'plaintext']): "$pbkdf2-sha512$<rounds>$<salt>$<checksum>", salt and
// checksum in passlib's "adapted base64" (standard alphabet with '.' for
// '+', no padding), the checksum the 64 bytes of PBKDF2-HMAC-SHA512.
const pbkdf2Prefix = "$pbkdf2-sha512$"

// Bounds on a stored hash. The database is not trusted to be sane: a hash
// asking for billions of rounds would hold a CPU for minutes per sign-in.
const (
	maxRounds     = 10_000_000 // Odoo 18 writes 600 000
	maxSaltBytes  = 1024       // passlib's own limit
	checksumBytes = sha512.Size
	// maxPassword is passlib's MAX_PASSWORD_SIZE: it refuses longer ones.
	maxPassword = 4096
)

// odooDefaultRounds is what Odoo 18 hashes with; an unknown login is made
// to cost as much (see passwordHash.dummy).
const odooDefaultRounds = 600_000

var errHashFormat = errors.New("not a pbkdf2-sha512 hash")

// passwordHash is a parsed passlib pbkdf2_sha512 hash.
type passwordHash struct {
	rounds   int
	salt     []byte
	checksum []byte
}

// ab64 is passlib's adapted base64: '.' stands for '+', no padding.
var ab64 = base64.RawStdEncoding.Strict()

func ab64Decode(s string) ([]byte, error) {
	return ab64.DecodeString(strings.ReplaceAll(s, ".", "+"))
}

// parsePasswordHash reads a hash as passlib writes it. Anything else
// (another scheme, plaintext, a truncated value) is an error: such a user
// cannot sign in here.
func parsePasswordHash(s string) (passwordHash, error) {
	rest, ok := strings.CutPrefix(s, pbkdf2Prefix)
	if !ok {
		return passwordHash{}, errHashFormat
	}
	parts := strings.Split(rest, "$")
	if len(parts) != 3 {
		return passwordHash{}, errHashFormat
	}
	// passlib writes rounds in decimal without leading zeros or sign.
	if parts[0] == "" || len(parts[0]) > 9 || parts[0][0] == '0' || strings.Trim(parts[0], "0123456789") != "" {
		return passwordHash{}, errHashFormat
	}
	rounds, err := strconv.Atoi(parts[0])
	if err != nil || rounds < 1 || rounds > maxRounds {
		return passwordHash{}, errHashFormat
	}
	salt, err := ab64Decode(parts[1])
	if err != nil || len(salt) > maxSaltBytes {
		return passwordHash{}, errHashFormat
	}
	sum, err := ab64Decode(parts[2])
	if err != nil || len(sum) != checksumBytes {
		return passwordHash{}, errHashFormat
	}
	return passwordHash{rounds: rounds, salt: salt, checksum: sum}, nil
}

// matches says, in time independent of where they differ, whether
// password hashes to h.
func (h passwordHash) matches(password string) bool {
	if len(password) > maxPassword {
		return false
	}
	key, err := pbkdf2.Key(sha512.New, password, h.salt, h.rounds, checksumBytes)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(key, h.checksum) == 1
}

// dummyHash is a hash no password matches, of the given rounds: verifying
// against it costs what verifying a real one does, so the time of a refusal
// does not tell whether the login exists.
func dummyHash(rounds int) passwordHash {
	h := passwordHash{rounds: rounds, salt: make([]byte, 16), checksum: make([]byte, checksumBytes)}
	rand.Read(h.salt)
	rand.Read(h.checksum)
	return h
}
