package daemon

import (
	"log/slog"
	"net"
	"testing"

	"github.com/netns-run/netns-run/stack/ethswitch"
	"github.com/netns-run/netns-run/stack/segment"
)

// TestDropFrames: a switch's drop reports are held by network, port and
// reason, the last one kept, until the summary takes them.
func TestDropFrames(t *testing.T) {
	frames := &dropFrames{last: map[dropKey][]slog.Attr{}}
	report := frames.onDrop("net1")
	report(ethswitch.Drop{Member: "02:42:ac:1e:00:02", Reason: ethswitch.DropSrcIP, Frame: []slog.Attr{slog.String("src_ip", "172.30.0.99")}, Suppressed: 3})
	report(ethswitch.Drop{Member: "02:42:ac:1e:00:02", Reason: ethswitch.DropSrcIP, Frame: []slog.Attr{slog.String("src_ip", "172.30.0.98")}})
	frames.onDrop("net2")(ethswitch.Drop{Member: "02:42:ac:1e:00:02", Reason: ethswitch.DropSrcIP})
	last := frames.takeAll()
	got := last[dropKey{"net1", "02:42:ac:1e:00:02", ethswitch.DropSrcIP}]
	if len(got) != 1 || got[0].String() != "src_ip=172.30.0.98" || len(last) != 2 {
		t.Errorf("the frames held: %v (all: %v); want net1's last one's src_ip, and net2's", got, last)
	}
	if len(frames.takeAll()) != 0 {
		t.Error("takeAll left frames behind")
	}
}

// TestNewDrops: a line per member and reason whose count grew, with the
// growth; members gone are forgotten.
func TestNewDrops(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:ac:1e:00:02")
	member := func(id, name string, drops map[string]uint64) segment.MemberStats {
		return segment.MemberStats{Member: segment.Member{ID: id, Name: name, MAC: mac}, PortStats: ethswitch.PortStats{MAC: mac, Drops: drops}}
	}
	segs := []runningSegment{{"net1", segment.Stats{Members: []segment.MemberStats{
		member("id-b", "b", map[string]uint64{ethswitch.DropSrcIP: 2}),
		member("id-a", "a", map[string]uint64{ethswitch.DropSrcIP: 5, ethswitch.DropOversize: 1}),
	}}}}
	lines, seen := newDrops(segs, nil)
	if len(lines) != 3 || lines[0].member != "a" || lines[0].reason != ethswitch.DropOversize || lines[2].member != "b" || lines[2].count != 2 {
		t.Errorf("the first lines: %+v", lines)
	}
	segs[0].stats.Members[1].Drops[ethswitch.DropSrcIP] = 9
	lines, seen = newDrops(segs, seen)
	if len(lines) != 1 || lines[0].member != "a" || lines[0].count != 4 || lines[0].mac != mac.String() {
		t.Errorf("after 4 more of a's: %+v; want one line counting 4", lines)
	}
	lines, seen = newDrops(nil, seen)
	if len(lines) != 0 || len(seen) != 0 {
		t.Errorf("with no members: %+v, %v", lines, seen)
	}
}
