package sessions

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeMMDB builds a small city database with MaxMind's own writer.
func writeMMDB(t *testing.T) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "cdcaudit-Test-City", RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	place := func(iso, country, city string) mmdbtype.Map {
		m := mmdbtype.Map{"country": mmdbtype.Map{
			"iso_code": mmdbtype.String(iso),
			"names":    mmdbtype.Map{"en": mmdbtype.String(country)},
		}}
		if city != "" {
			m["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(city), "fr": mmdbtype.String(city + "-fr")}}
		}
		return m
	}
	for _, n := range []struct {
		cidr string
		data mmdbtype.Map
	}{
		{"81.2.69.0/24", place("GB", "United Kingdom", "London")},
		{"89.160.20.0/24", place("SE", "Sweden", "")}, // country precision only
		{"2a02:ec80::/32", place("BE", "Belgium", "Brussels")},
	} {
		_, network, err := net.ParseCIDR(n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(network, n.data); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "test-city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSessionsGeoIP(t *testing.T) {
	s := odoo18(t, Options{GeoIPPath: writeMMDB(t)})
	at := t0.Add(time.Minute)
	for _, tc := range []struct {
		seed, ip            string
		country, city       any // what the application recorded
		wantCountry, wantCy string
	}{
		{"g1", "81.2.69.142", nil, nil, "United Kingdom", "London"},
		{"g2", "89.160.20.112", nil, nil, "Sweden", ""},
		{"g3", "2a02:ec80:1::7", nil, nil, "Belgium", "Brussels"},
		{"g4", "::ffff:81.2.69.1", "", "", "United Kingdom", "London"},
		{"g5", "81.2.69.142", "France", "Paris", "France", "Paris"}, // the application's own values win
		{"g6", "10.0.0.5", nil, nil, "", ""},                        // private
		{"g7", "not an ip", nil, nil, "", ""},
		{"g8", "192.0.2.1", nil, nil, "", ""}, // not in the database
	} {
		r := with(deviceRow18(sid42(tc.seed), 6, tc.ip, "windows", "chrome", "computer", at, at), "country", tc.country, "city", tc.city)
		s.insert(devicesT, at, r)
		got := mustSession(t, s.tr, Pseudonym(sid42(tc.seed)))
		if got.Country != tc.wantCountry || got.City != tc.wantCy {
			t.Errorf("%s (%s): country %q city %q, want %q %q", tc.seed, tc.ip, got.Country, got.City, tc.wantCountry, tc.wantCy)
		}
	}
	// A refresh from another IP looks the new one up.
	s.insert(devicesT, at.Add(time.Hour), deviceRow18(sid42("g6"), 6, "81.2.69.9", "windows", "chrome", "computer", at, at.Add(time.Hour)))
	if got := mustSession(t, s.tr, Pseudonym(sid42("g6"))); got.Country != "United Kingdom" || got.City != "London" {
		t.Errorf("after moving: %q %q", got.Country, got.City)
	}
}
