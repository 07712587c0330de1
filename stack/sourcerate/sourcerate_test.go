package sourcerate

import (
	"net/netip"
	"testing"
)

func TestBurstThenRefusedPerSource(t *testing.T) {
	tab := New(Limit{PerSecond: 1e-9, Burst: 3}) // no refill within the test
	a, b := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.3")
	for i := range 3 {
		if !tab.Allow(a) {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	for range 2 {
		if tab.Allow(a) {
			t.Fatal("a request past the burst was allowed")
		}
	}
	if !tab.Allow(b) {
		t.Error("another source was refused while the first is over its rate")
	}
	// A v4-mapped address is the same source.
	if tab.Allow(netip.AddrFrom16(a.As16())) {
		t.Error("the v4-mapped spelling of a refused source got a fresh bucket")
	}
	got := tab.Refused()
	if len(got) != 1 || got[a] != 3 {
		t.Errorf("Refused() = %v; want %s: 3", got, a)
	}
	tab.Forget(a)
	if !tab.Allow(a) || len(tab.Refused()) != 0 {
		t.Error("a forgotten source did not start afresh")
	}
}

func TestExhaustedTakesNothing(t *testing.T) {
	tab := New(Limit{PerSecond: 1e-9, Burst: 2})
	a := netip.MustParseAddr("172.18.0.2")
	if tab.Exhausted(a) {
		t.Fatal("a source never seen is exhausted")
	}
	tab.Allow(a)
	for range 10 {
		if tab.Exhausted(a) {
			t.Fatal("one token of a burst of 2 left: exhausted")
		}
	}
	if !tab.Allow(a) {
		t.Fatal("looking at the bucket took its last token")
	}
	if !tab.Exhausted(netip.AddrFrom16(a.As16())) {
		t.Error("a spent bucket (asked for by its v4-mapped spelling) is not exhausted")
	}
	if got := tab.Refused(); len(got) != 0 {
		t.Errorf("Exhausted counted refusals: %v", got)
	}
}

func TestRefills(t *testing.T) {
	tab := New(Limit{PerSecond: 1e9, Burst: 1})
	a := netip.MustParseAddr("10.0.2.100")
	for i := range 100 {
		if !tab.Allow(a) {
			t.Fatalf("request %d refused at a rate of 1e9/s", i+1)
		}
	}
}

func TestBounded(t *testing.T) {
	tab := New(Limit{PerSecond: 1e-9, Burst: 1})
	// Every address spends its one token and is refused once: none may
	// be forgotten, so the table fills up and the rest share one bucket.
	for i := range MaxSources + 10 {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tab.Allow(src)
		tab.Allow(src)
	}
	if n := len(tab.by); n > MaxSources+1 {
		t.Fatalf("the table holds %d sources; want at most %d and the shared one", n, MaxSources)
	}
	if tab.Refused()[netip.Addr{}] == 0 {
		t.Error("the sources past the bound were not counted under the shared bucket")
	}
	// Sources with a full bucket and nothing refused make room.
	idle := New(Limit{PerSecond: 1e9, Burst: 1})
	for i := range 2 * MaxSources {
		idle.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if _, shared := idle.by[netip.Addr{}]; shared {
		t.Error("idle sources were not forgotten to make room")
	}
}
