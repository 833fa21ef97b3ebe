package redact

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// ReadKeyFile returns the HMAC key held in a file (the redact_key_file
// setting). Surrounding white space (a final newline) is not part of the
// key; at least MinKeyLen bytes must remain. Its errors name the file,
// never its content. Generate one with e.g. `openssl rand -hex 32 > key;
// chmod 600 key`.
func ReadKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New(path + ": not a regular file")
	}
	if st.Size() > 1<<16 {
		return nil, errors.New(path + ": larger than 64 KiB: not a key file")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key := bytes.TrimSpace(data)
	if err := checkKeyLen(len(key)); err != nil {
		return nil, fmt.Errorf("%s: %v (e.g. openssl rand -hex 32 > %s)", path, err, path)
	}
	return key, nil
}

// checkKeyLen is the rule of a key's length, wherever it comes from.
func checkKeyLen(n int) error {
	if n < MinKeyLen {
		return fmt.Errorf("the key has %d bytes, want at least %d", n, MinKeyLen)
	}
	return nil
}
