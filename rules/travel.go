package rules

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/audit"
)

// presence is where a user was last seen active: the session of an
// attributed change, its IP and that IP's place.
type presence struct {
	Session  string    `json:"session"`
	IP       string    `json:"ip"`
	Lat      float64   `json:"lat"`
	Lon      float64   `json:"lon"`
	RadiusKm float64   `json:"radius_km,omitempty"`
	Country  string    `json:"country,omitempty"`
	City     string    `json:"city,omitempty"`
	At       time.Time `json:"at"`
	Event    string    `json:"event"`
	// Alerted is the pair of sessions of the last hit, so two sessions
	// used in turn from two places raise one hit, not one per switch.
	Alerted [2]string `json:"alerted,omitzero"`
}

// impossibleTravel compares where the session of a change is with where
// the user was last: farther apart (less both places' accuracy radius)
// than TravelKmh allows in the time between is a hit.
func (st *Stage) impossibleTravel(e *audit.Event, id string, user int64) {
	s, ok := st.sessions.Session(e.Actor.SessionID)
	if !ok || s.IP == "" {
		return
	}
	prev := st.travel[user]
	key := prefixTravel + strconv.FormatInt(user, 10)
	if prev != nil && prev.IP == s.IP {
		prev.Session, prev.At, prev.Event = s.ID, e.CommitTime, id
		st.dirty[key] = true
		return
	}
	place, ok := st.sessions.Place(s.IP)
	if !ok || !place.HasCoordinates {
		return // nowhere known: nothing to compare
	}
	cur := &presence{Session: s.ID, IP: s.IP, Lat: place.Lat, Lon: place.Lon, RadiusKm: place.RadiusKm,
		Country: place.Country, City: place.City, At: e.CommitTime, Event: id}
	st.travel[user] = cur
	st.dirty[key] = true
	if prev == nil {
		return
	}
	dist := distanceKm(prev.Lat, prev.Lon, cur.Lat, cur.Lon) - prev.RadiusKm - cur.RadiusKm
	if dist <= 0 {
		return
	}
	hours := cur.At.Sub(prev.At).Hours()
	if hours > 0 && dist/hours <= st.cfg.TravelKmh {
		return
	}
	pair := [2]string{min(prev.Session, cur.Session), max(prev.Session, cur.Session)}
	if prev.Alerted == pair {
		cur.Alerted = pair
		return
	}
	cur.Alerted = pair
	speed := "∞"
	if hours > 0 {
		speed = strconv.FormatFloat(dist/hours, 'f', 0, 64)
	}
	st.hit(RuleImpossibleTravel, e, id, alerts.Alert{
		IP: s.IP, Browser: s.Browser, OS: s.OS, Device: s.Device, Country: place.Country, City: place.City,
		Events:   []string{prev.Event},
		Sessions: []string{prev.Session},
		Summary: fmt.Sprintf("%s was active from %s and, %s later, from %s: %.0f km apart (%s km/h)",
			who(e), placeName(prev.City, prev.Country, prev.IP), cur.At.Sub(prev.At).Round(time.Second),
			placeName(cur.City, cur.Country, cur.IP), dist, speed),
		Detail: map[string]string{"distance_km": strconv.FormatFloat(dist, 'f', 0, 64), "speed_kmh": speed,
			"from_ip": prev.IP, "from": placeName(prev.City, prev.Country, prev.IP), "since": prev.At.UTC().Format(time.RFC3339Nano),
			"threshold_kmh": strconv.FormatFloat(st.cfg.TravelKmh, 'f', -1, 64)},
	})
}

func placeName(city, country, ip string) string {
	switch {
	case city != "" && country != "":
		return city + ", " + country
	case country != "":
		return country
	}
	return ip
}

// distanceKm is the great-circle distance (haversine, mean Earth radius).
func distanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Sqrt(min(1, a)))
}
