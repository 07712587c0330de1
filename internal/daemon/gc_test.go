package daemon

import (
	"runtime/debug"
	"testing"
)

// TestTuneGC: the daemon runs at gcPercent, unless GOGC is in its
// environment, which stays in force.
func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	if !tuneGC(func(string) (string, bool) { return "", false }) {
		t.Fatal("tuneGC without GOGC set left the default")
	}
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GOGC after tuneGC: %d, want %d", got, gcPercent)
	}
	if tuneGC(func(k string) (string, bool) { return "200", k == "GOGC" }) {
		t.Error("tuneGC overrode the user's GOGC")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC after tuneGC with GOGC set: %d, want it untouched (100)", got)
	}
}
