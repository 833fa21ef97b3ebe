package sessions

import (
	"strings"
	"sync"

	"github.com/ua-parser/uap-go/uaparser"
)

// uaParser is built on first use (compiling uap-core's embedded regexes
// takes about 150 ms) and shared: it is safe for concurrent use and caches
// recent user agents.
var uaParser = sync.OnceValues(func() (*uaparser.Parser, error) { return uaparser.New() })

// client is what a user agent says about the device.
type client struct {
	Browser, OS, Device string
}

// parseUserAgent turns a User-Agent header into browser ("Chrome 131"), OS
// ("Windows 10", "iOS 17.4") and device ("computer", "mobile (iPhone)",
// "tablet (iPad)", "bot"). Unknown parts are "".
func parseUserAgent(ua string) client {
	ua = clip(ua, maxUserAgent)
	if ua == "" {
		return client{}
	}
	p, err := uaParser()
	if err != nil {
		return client{}
	}
	var c client
	if b := p.ParseUserAgent(ua); b != nil && known(b.Family) {
		c.Browser = joinVersion(b.Family, b.Major, "")
	}
	o := p.ParseOs(ua)
	osFamily := ""
	if o != nil && known(o.Family) {
		osFamily = o.Family
		c.OS = joinVersion(o.Family, o.Major, o.Minor)
	}
	d := p.ParseDevice(ua)
	family, brand := "", ""
	if d != nil {
		family, brand = d.Family, d.Brand
	}
	class := ""
	switch {
	case family == "Spider":
		return client{Browser: c.Browser, OS: c.OS, Device: "bot"}
	case family == "iPad" || strings.Contains(strings.ToLower(family), "tablet") ||
		(osFamily == "Android" && !strings.Contains(ua, "Mobile")):
		class = "tablet"
	case mobileOS[osFamily] || family == "iPhone" || family == "iPod":
		class = "mobile"
	case osFamily != "":
		class = "computer"
	}
	if known(family) && !strings.HasPrefix(brand, "Generic") && len(family) > 1 {
		if class == "" {
			class = "device"
		}
		c.Device = clip(class+" ("+family+")", maxText)
	} else {
		c.Device = class
	}
	return c
}

var mobileOS = map[string]bool{
	"iOS": true, "Android": true, "Windows Phone": true, "BlackBerry OS": true, "KaiOS": true,
	"Firefox OS": true, "Symbian OS": true, "Tizen": true, "HarmonyOS": true,
}

func known(family string) bool { return family != "" && family != "Other" }

func joinVersion(family, major, minor string) string {
	s := family
	if major != "" {
		s += " " + major
		if minor != "" {
			s += "." + minor
		}
	}
	return clip(s, maxText)
}
