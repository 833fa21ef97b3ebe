package sessions

import (
	"fmt"
	"math"
	"net/netip"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// geoIP looks up the country and city of an IP in a MaxMind DB file
// (GeoIP2/GeoLite2 or DB-IP, country or city edition: they share the record
// layout read here).
type geoIP struct {
	db *maxminddb.Reader
}

type geoRecord struct {
	Country struct {
		ISOCode string            `maxminddb:"iso_code"`
		Names   map[string]string `maxminddb:"names"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string            `maxminddb:"iso_code"`
		Names   map[string]string `maxminddb:"names"`
	} `maxminddb:"registered_country"`
	City struct {
		Names map[string]string `maxminddb:"names"`
	} `maxminddb:"city"`
	Location struct {
		Latitude       *float64 `maxminddb:"latitude"`
		Longitude      *float64 `maxminddb:"longitude"`
		AccuracyRadius uint16   `maxminddb:"accuracy_radius"`
	} `maxminddb:"location"`
}

// Place is where an IP address is, as far as the GeoIP database says: a
// city database has coordinates and their accuracy (km), a country one
// none (HasCoordinates false).
type Place struct {
	Country, City  string
	Lat, Lon       float64
	HasCoordinates bool
	RadiusKm       float64
}

func openGeoIP(path string) (*geoIP, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sessions: geoip database %s: %w", path, err)
	}
	return &geoIP{db: db}, nil
}

// lookup returns the English names of the country and city of ip ("" when
// unknown: a private address, a malformed one, a country-only database).
func (g *geoIP) lookup(ip string) (country, city string) {
	p, _ := g.place(ip)
	return p.Country, p.City
}

// Place returns where ip is according to the tracker's GeoIP database
// (false without one, or when it does not know the address).
func (t *Tracker) Place(ip string) (Place, bool) { return t.geo.place(ip) }

func (g *geoIP) place(ip string) (Place, bool) {
	if g == nil || ip == "" {
		return Place{}, false
	}
	// Tolerate what an application may store: a forwarded-for list, a
	// prefix length (inet), an IPv4-mapped IPv6 address.
	ip, _, _ = strings.Cut(ip, ",")
	ip, _, _ = strings.Cut(strings.TrimSpace(ip), "/")
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(ip); err2 == nil {
			addr = ap.Addr()
		} else {
			return Place{}, false
		}
	}
	addr = addr.Unmap().WithZone("")
	if !addr.IsGlobalUnicast() || addr.IsPrivate() {
		return Place{}, false
	}
	var rec geoRecord
	res := g.db.Lookup(addr)
	if !res.Found() || res.Decode(&rec) != nil {
		return Place{}, false
	}
	country := name(rec.Country.Names, rec.Country.ISOCode)
	if country == "" {
		country = name(rec.RegisteredCountry.Names, rec.RegisteredCountry.ISOCode)
	}
	p := Place{Country: clip(country, maxText), City: clip(name(rec.City.Names, ""), maxText)}
	if l := rec.Location; l.Latitude != nil && l.Longitude != nil &&
		math.Abs(*l.Latitude) <= 90 && math.Abs(*l.Longitude) <= 180 {
		p.Lat, p.Lon, p.HasCoordinates = *l.Latitude, *l.Longitude, true
		p.RadiusKm = float64(l.AccuracyRadius)
	}
	return p, true
}

func name(names map[string]string, fallback string) string {
	if n := names["en"]; n != "" {
		return n
	}
	return fallback
}

func (g *geoIP) close() error {
	if g == nil {
		return nil
	}
	return g.db.Close()
}
