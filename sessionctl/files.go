package sessionctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cdcaudit/cdcaudit/storewatch"
)

// files removes the session's files from the store as Odoo's
// delete_from_identifiers does (<dir>/<id[:2]>/<id>*), for the identifiers
// read from the database, else those found by listing the store.
func (c *Controller) files(pseudonym string, ids []string) (int, error) {
	if len(ids) == 0 {
		var err error
		if ids, err = storewatch.Identifiers(c.cfg.SessionStore, pseudonym); err != nil {
			return 0, fmt.Errorf("listing: %w", err)
		}
	}
	n := 0
	var errs []error
	for _, id := range ids {
		k, err := RemoveSessionFiles(c.cfg.SessionStore, id)
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// ErrIdentifier refuses an identifier that is not Odoo's: it could name a
// file outside the store.
var ErrIdentifier = errors.New("not an Odoo session identifier (^[A-Za-z0-9_-]{42}$): refused")

// RemoveSessionFiles removes the files <dir>/<id[:2]>/<id>* of one
// 42-character identifier, and returns how many it removed (0 when there
// were none: the session was gone already). The identifier is checked
// before anything is touched; the prefix directory must be a directory of
// the store (not a symbolic link); the files are the directory's entries
// whose names begin with the identifier (no pattern is expanded), removed
// without following links. Errors never carry the identifier.
func RemoveSessionFiles(dir, id string) (int, error) {
	if !storewatch.ValidIdentifier(id) {
		return 0, ErrIdentifier
	}
	sub := filepath.Join(dir, id[:2])
	fi, err := os.Lstat(sub)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, errors.New("cannot read the session's directory")
	}
	if !fi.IsDir() {
		return 0, errors.New("the session's directory is not a directory of the store")
	}
	entries, err := os.ReadDir(sub)
	if err != nil {
		return 0, errors.New("cannot list the session's directory")
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), id) || e.IsDir() {
			continue
		}
		err := os.Remove(filepath.Join(sub, e.Name()))
		switch {
		case err == nil:
			n++
		case errors.Is(err, fs.ErrNotExist): // removed meanwhile (Odoo's own logout)
		default:
			return n, fmt.Errorf("cannot remove a session file: %w", unwrapPath(err))
		}
	}
	return n, nil
}

// unwrapPath drops the path from an *fs.PathError: it holds the identifier.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
