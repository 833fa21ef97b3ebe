package sessions

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/cdcaudit/cdcaudit/profile"
)

func TestPlaceCoordinates(t *testing.T) {
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "cdcaudit-Test-City", RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		cidr string
		data mmdbtype.Map
	}{
		{"81.2.69.0/24", mmdbtype.Map{
			"country":  mmdbtype.Map{"iso_code": mmdbtype.String("GB"), "names": mmdbtype.Map{"en": mmdbtype.String("United Kingdom")}},
			"city":     mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("London")}},
			"location": mmdbtype.Map{"latitude": mmdbtype.Float64(51.5142), "longitude": mmdbtype.Float64(-0.0931), "accuracy_radius": mmdbtype.Uint16(10)},
		}},
		{"89.160.20.0/24", mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("SE")}}},
		{"2a02:ec80::/32", mmdbtype.Map{"location": mmdbtype.Map{"latitude": mmdbtype.Float64(91), "longitude": mmdbtype.Float64(4)}}},
	} {
		_, network, err := net.ParseCIDR(n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(network, n.data); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tr, err := New(profile.Odoo(), Options{GeoIPPath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	p, ok := tr.Place("81.2.69.142")
	if !ok || !p.HasCoordinates || p.Lat != 51.5142 || p.Lon != -0.0931 || p.RadiusKm != 10 || p.City != "London" {
		t.Errorf("London: %+v %v", p, ok)
	}
	if p, ok := tr.Place("89.160.20.1"); !ok || p.HasCoordinates || p.Country != "SE" {
		t.Errorf("a country-only record: %+v %v", p, ok)
	}
	if p, _ := tr.Place("2a02:ec80::1"); p.HasCoordinates {
		t.Errorf("a latitude beyond 90 taken: %+v", p)
	}
	if _, ok := tr.Place("10.0.0.1"); ok {
		t.Error("a private address has a place")
	}
	empty, _ := New(profile.Odoo(), Options{})
	if _, ok := empty.Place("81.2.69.142"); ok {
		t.Error("a place without a database")
	}
}
