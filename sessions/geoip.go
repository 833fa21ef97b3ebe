package sessions

import (
	"fmt"
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
	if g == nil || ip == "" {
		return "", ""
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
			return "", ""
		}
	}
	addr = addr.Unmap().WithZone("")
	if !addr.IsGlobalUnicast() || addr.IsPrivate() {
		return "", ""
	}
	var rec geoRecord
	res := g.db.Lookup(addr)
	if !res.Found() || res.Decode(&rec) != nil {
		return "", ""
	}
	country = name(rec.Country.Names, rec.Country.ISOCode)
	if country == "" {
		country = name(rec.RegisteredCountry.Names, rec.RegisteredCountry.ISOCode)
	}
	return clip(country, maxText), clip(name(rec.City.Names, ""), maxText)
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
