package httpserver

import "testing"

func TestValidateAddr(t *testing.T) {
	for _, ok := range []string{DefaultAddr, ":9187", "[::1]:0", "localhost:65535"} {
		if err := ValidateAddr(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"9187", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:http", ""} {
		if err := ValidateAddr(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
