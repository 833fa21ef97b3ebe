package sink

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Source returns the source recorded with the store's identity: "" when
// none is (a new store, or one made before sources).
func (s *Store) Source() string {
	id, _, err := s.Identity()
	if err != nil {
		return ""
	}
	return id.Source
}

// CheckSource refuses a source other than the one the store recorded (a
// store's source never changes); it records nothing.
func (s *Store) CheckSource(source string) error {
	if have := s.Source(); have != "" && have != source {
		return s.otherSource(have, source)
	}
	return nil
}

func (s *Store) otherSource(have, source string) error {
	return fmt.Errorf("the store in %s belongs to source %s, not %s: a store's source never changes (use --source %s, or a new --data-dir)",
		s.dir, have, source, have)
}

// ClaimSource checks that the store is source's: a store whose identity
// names no source (made before sources) adopts it and records it; one that
// names another refuses (CheckSource). A store without an identity yet (a
// new one) records the source with it (SetIdentity). Claim it once the
// identity is known to be the server's: a store of another database must
// not adopt this one's source.
func (s *Store) ClaimSource(source string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(metaIdentity)
		if v == nil {
			return nil
		}
		var id Identity
		if err := json.Unmarshal(v, &id); err != nil {
			return fmt.Errorf("sink: read identity: %w", err)
		}
		switch id.Source {
		case source:
			return nil
		case "":
			id.Source = source
			v, err := json.Marshal(id)
			if err != nil {
				return err
			}
			return meta.Put(metaIdentity, v)
		}
		return s.otherSource(id.Source, source)
	})
}
