package daemon

import "runtime/debug"

// gcPercent is the daemon's GOGC. Its heap under load is mostly its
// connections' buffers (gVisor's windows, the relay's copies), which the
// default of 100 lets grow to twice what is live before a collection (see
// docs/ARCHITECTURE.md, Measured facts: The daemon's GOGC).
const gcPercent = 50

// tuneGC sets the daemon's GOGC to gcPercent unless the user set GOGC in
// its environment (lookup is os.LookupEnv), and says whether it did.
func tuneGC(lookup func(string) (string, bool)) bool {
	if _, set := lookup("GOGC"); set {
		return false
	}
	debug.SetGCPercent(gcPercent)
	return true
}
