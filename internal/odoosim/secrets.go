package odoosim

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strings"
)

// Odoo's passlib contexts: user passwords are pbkdf2_sha512 with 600,000
// rounds (Odoo 18), API keys pbkdf2_sha512 with 6,000.
const (
	passwordRounds = 600_000
	apiKeyRounds   = 6_000
)

func randRead(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
}

// ab64 is passlib's "adapted base64": standard base64 with '.' for '+' and
// no padding.
func ab64(b []byte) string {
	return strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(b), "+", ".")
}

// hashPBKDF2 returns passlib's pbkdf2_sha512 hash of secret with a random
// 16-byte salt: $pbkdf2-sha512$ROUNDS$SALT$CHECKSUM.
func hashPBKDF2(secret string, rounds int) string {
	salt := make([]byte, 16)
	randRead(salt)
	dk, err := pbkdf2.Key(sha512.New, secret, salt, rounds, 64)
	if err != nil {
		panic(err) // only for out-of-range key lengths
	}
	return fmt.Sprintf("$pbkdf2-sha512$%d$%s$%s", rounds, ab64(salt), ab64(dk))
}

// HashPassword returns the hash Odoo 18 stores in res_users.password for a
// plain password (passlib pbkdf2_sha512, 600,000 rounds: it takes a
// noticeable fraction of a second, as in Odoo).
func HashPassword(plain string) string { return hashPBKDF2(plain, passwordRounds) }

// NewTOTPSecret returns a random TOTP secret as auth_totp stores it: 160
// bits in upper-case base32, without spaces (32 characters).
func NewTOTPSecret() string {
	b := make([]byte, 20)
	randRead(b)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}
