package sessions

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// ValidateIdleAfter accepts 1s to 24h (Options.IdleAfter).
func ValidateIdleAfter(d time.Duration) error {
	if d < time.Second || d > 24*time.Hour {
		return fmt.Errorf("%s is out of range (want 1s to 24h)", d)
	}
	return nil
}

// ValidateLifetime accepts 1m to a year (Options.Lifetime), longer than
// idleAfter.
func ValidateLifetime(lifetime, idleAfter time.Duration) error {
	if lifetime < time.Minute || lifetime > 366*24*time.Hour {
		return fmt.Errorf("%s is out of range (want 1m to 8784h, a year)", lifetime)
	}
	switch {
	case lifetime < idleAfter:
		return fmt.Errorf("%s is shorter than idle_after (%s): a session would end before it is idle", lifetime, idleAfter)
	case lifetime == idleAfter:
		return fmt.Errorf("%s equals idle_after: a session would end as it becomes idle", lifetime)
	}
	return nil
}

// ValidateGeoIPFile checks that Options.GeoIPPath names a readable,
// non-empty regular file, without reading the database (New does).
func ValidateGeoIPFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return err
	case !st.Mode().IsRegular():
		return errors.New("not a regular file")
	case st.Size() == 0:
		return errors.New("empty file (want a MaxMind or DB-IP .mmdb database)")
	}
	return nil
}
