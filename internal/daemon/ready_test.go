package daemon

import (
	"os"
	"testing"
	"time"
)

// TestAwaitReady: the wait for a started daemon ends at its byte, at the
// pipe's end (it exited without listening), or at the deadline.
func TestAwaitReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		far  func(w *os.File)
		min  time.Duration // the least the wait must take
	}{
		{"listening", func(w *os.File) { w.Write([]byte{1}) }, 0},
		{"exited", func(w *os.File) { w.Close() }, 0},
		{"silent", func(*os.File) {}, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			tc.far(w)
			start := time.Now()
			awaitReady(r, start.Add(200*time.Millisecond))
			took := time.Since(start)
			if took < tc.min || (tc.min == 0 && took > 100*time.Millisecond) {
				t.Errorf("awaitReady took %v; want at least %v, and at once when the daemon spoke or left", took, tc.min)
			}
		})
	}
}
