package selfusage

import (
	"os"
	"testing"
)

func TestCountersGrow(t *testing.T) {
	c0 := CPU()
	w0, ok := Written()
	if !ok {
		t.Skip("no /proc/self/io")
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for range 4 {
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; CPU() == c0; i++ { // spin until the clock ticks
		_ = i * i
	}
	if w, _ := Written(); w-w0 < 4<<20 {
		t.Errorf("Written grew by %d after 4 MiB were written", w-w0)
	}
}
