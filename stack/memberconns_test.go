package stack

import (
	"net/netip"
	"testing"
)

// Ending a member aborts its connections alone, once each; a forgotten
// connection is not aborted, and a member that comes back at the address
// starts with none.
func TestMemberConnsEnd(t *testing.T) {
	var tr memberConns
	a, b := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	aborted := map[string]int{}
	abort := func(name string) func() { return func() { aborted[name]++ } }
	tr.add(a, abort("a1"))
	forgetA2 := tr.add(a, abort("a2"))
	tr.add(b, abort("b1"))
	forgetA2()
	tr.end(a)
	tr.end(a)
	if aborted["a1"] != 1 || aborted["a2"] != 0 || aborted["b1"] != 0 {
		t.Errorf("after a's end: %v; want a1 aborted once, a2 and b1 not", aborted)
	}
	forgetA3 := tr.add(a, abort("a3"))
	forgetA3()
	tr.end(a)
	if aborted["a3"] != 0 {
		t.Error("a connection forgotten before its member's end was aborted")
	}
	if len(tr.by) != 1 {
		t.Errorf("%d members tracked, want b alone", len(tr.by))
	}
}
