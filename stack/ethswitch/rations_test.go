package ethswitch

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestRations: a port is rationed from its rationAfter-th refusal in a
// window, stays so while its windows have rationAfter connection
// attempts, refused or taken, and comes off in a window with fewer; a port
// without attempts never reads the clock.
func TestRations(t *testing.T) {
	var r rations
	noClock := func() time.Time { t.Fatal("a port without connection attempts read the clock"); return time.Time{} }
	for range 1000 {
		if r.next(noClock) != 0 {
			t.Fatal("a port without connection attempts waited")
		}
	}

	clock := time.Unix(1000, 0)
	now := func() time.Time { return clock }
	// reads is how many frames the port reads before it must wait, the
	// gateway refusing each; the frame read after the wait is the next
	// window's first.
	reads := func(refuse bool) (n int, wait time.Duration) {
		for n = 0; n < 1000; n++ {
			if wait = r.next(now); wait > 0 {
				return n, wait
			}
			if refuse {
				r.refused++
			}
		}
		return n, 0
	}
	r.refused = 1 // a first refusal begins a window
	if n, wait := reads(true); n != rationFrames || wait != rationWindow {
		t.Fatalf("a port refused at each frame read %d frames, then waited %v; want %d, then the rest of the window (%v)", n, wait, rationFrames, rationWindow)
	}
	clock = clock.Add(rationWindow) // the wait
	for i := range 3 {
		if n, wait := reads(true); n != rationFrames-1 || wait != rationWindow {
			t.Fatalf("window %d of a rationed port: read %d frames after its first, then waited %v; want %d and %v", i, n, wait, rationFrames-1, rationWindow)
		}
		clock = clock.Add(rationWindow)
	}
	// Taken SYNs keep it rationed (the gateway looks without taking).
	for range rationFrames - 1 {
		if r.next(now) != 0 {
			t.Fatal("a rationed port waited before its ration was read")
		}
		r.newConns++
	}
	clock = clock.Add(rationWindow)
	if r.next(now); !r.rationed {
		t.Fatal("a port with a window of connection attempts that the gateway took came off its rations")
	}
	// A window with fewer attempts ends it.
	r.newConns = rationAfter - 1
	clock = clock.Add(rationWindow)
	if n, wait := reads(false); n != 1000 || wait != 0 || r.rationed {
		t.Fatalf("after a window of %d attempts: read %d frames, waited %v, rationed %v; want no rations", rationAfter-1, n, wait, r.rationed)
	}
}

// refuser is a gateway dispatcher that refuses every frame from one MAC.
type refuser struct {
	*fakeDispatcher
	from    net.HardwareAddr
	checked atomic.Int64 // frames of from it saw
}

func (r *refuser) CheckFrame(frame []byte) FrameVerdict {
	if net.HardwareAddr(frame[6:12]).String() != r.from.String() {
		return FramePass
	}
	r.checked.Add(1)
	return FrameRefused
}

// TestRationedMember: a member whose frames the gateway refuses has them
// read a ration a window, the rest left queued, while another member's
// frames reach the gateway at once; once it stops, its queue is read out.
func TestRationedMember(t *testing.T) {
	s := newSwitch(t, Options{})
	d := &refuser{fakeDispatcher: &fakeDispatcher{c: make(chan struct{}, 1024)}, from: memberMAC(2)}
	s.GatewayEndpoint().Attach(d)
	flooder, other := addSockMember(t, s, 2), addSockMember(t, s, 3)
	syn := func(l *ethtest.Link) []byte {
		return ethtest.EthFrame(gwMAC, l.MAC, header.IPv4ProtocolNumber, ethtest.IPv4Packet(l.IP, gwIP, header.TCPProtocolNumber, make([]byte, header.TCPMinimumSize)))
	}
	const flood = 400
	start := time.Now()
	for range flood {
		flooder.Send(syn(flooder))
	}
	other.Send(syn(other))
	d.expect(t, syn(other))
	time.Sleep(3 * rationWindow)
	// At most the frames before the rations, and a ration for each
	// window begun since (the sleep may have run long).
	windows := int(time.Since(start)/rationWindow) + 2
	if got, most := int(d.checked.Load()), rationAfter+rationFrames*windows; got > most {
		t.Errorf("the flooder's frames read within %d windows: %d of %d; want at most %d", windows, got, flood, most)
	}
	for deadline := time.Now().Add(5 * time.Second); d.checked.Load() < flood; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the flooder's queue: %d of %d frames read", d.checked.Load(), flood)
		}
	}
	d.expectNothing(t, 10*time.Millisecond)
}
