package sink

import (
	"reflect"
	"testing"
)

// What String writes, ParseRetention reads back the same.
func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"400d", "default=400d,public.account_move*=10y,mail_message=12w,res_partner=forever", "36h", "a=1s,b.c=forever", "x.y.z=1d", "6m", "default=1y,default=2y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRetention(s)
		if err != nil {
			return
		}
		again, err := ParseRetention(r.String())
		if err != nil {
			t.Fatalf("%q → %q: %v", s, r.String(), err)
		}
		if r.IsZero() != again.IsZero() || !r.IsZero() && !reflect.DeepEqual(r, again) {
			t.Fatalf("%q → %+v → %q → %+v", s, r, r.String(), again)
		}
	})
}
