package auth

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Odoo 18's auth_totp (models/totp.py): RFC 6238 with HMAC-SHA1, 6 digits,
// a 30-second step, and a code accepted when it is the code of any step
// between t−30 s and t+30 s (so the previous, current and next step).
const (
	totpDigits = 6
	totpStep   = 30 // seconds
	totpWindow = 30 // seconds either side
	// maxTOTPSecret bounds a secret read from the database (Odoo writes 32
	// base32 characters, 160 bits).
	maxTOTPSecret = 128
)

var errTOTPSecret = errors.New("unusable two-factor secret")

// decodeTOTPSecret reads res_users.totp_secret: base32 as Odoo stores it
// (upper case, no spaces); spaces and lower case, as its wizard shows the
// secret, are tolerated.
func decodeTOTPSecret(s string) ([]byte, error) {
	if len(s) > maxTOTPSecret {
		return nil, errTOTPSecret
	}
	s = strings.ToUpper(strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s))
	s = strings.TrimRight(s, "=")
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil || len(key) < 10 { // under 80 bits is no authenticator's secret
		return nil, errTOTPSecret
	}
	return key, nil
}

// hotp is RFC 4226's code of counter, as totp.py's hotp computes it.
func hotp(key []byte, counter uint64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0xf
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	code := strconv.FormatUint(uint64(v%1_000_000), 10)
	return strings.Repeat("0", totpDigits-len(code)) + code
}

// normalizeTOTPCode removes the spaces a person may type ("123 456", as
// Odoo's controller does) and says whether what is left is a code.
func normalizeTOTPCode(code string) (string, bool) {
	if len(code) > 32 {
		return "", false
	}
	code = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, code)
	if len(code) != totpDigits || strings.Trim(code, "0123456789") != "" {
		return "", false
	}
	return code, true
}

// matchTOTP returns the step whose code code is, within Odoo's window
// around now, or ok false. Every step of the window is computed and
// compared in constant time, whichever matches.
func matchTOTP(key []byte, code string, now time.Time) (step uint64, ok bool) {
	t := now.Unix()
	if t < totpWindow {
		return 0, false
	}
	low := uint64(t-totpWindow) / totpStep
	high := uint64(t+totpWindow) / totpStep
	for c := low; c <= high; c++ {
		if subtle.ConstantTimeCompare([]byte(hotp(key, c)), []byte(code)) == 1 && !ok {
			step, ok = c, true
		}
	}
	return step, ok
}
