package ethswitch

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
)

// recorder is a tap that keeps copies of the frames it saw.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
}

func (r *recorder) tap(f []byte) {
	r.mu.Lock()
	r.frames = append(r.frames, append([]byte(nil), f...))
	r.mu.Unlock()
}

func (r *recorder) waitN(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r.mu.Lock()
		got := append([][]byte(nil), r.frames...)
		r.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("tap saw %d frames, want %d", len(got), n)
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTapSeesForwardedAndDroppedFrames(t *testing.T) {
	s := newSwitch(t, Options{})
	attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	var r1, r2 recorder
	rm1 := s.AddTap(r1.tap)
	rm2 := s.AddTap(r2.tap)

	ok := ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1, 2, payload(100))
	a.Send(ok)
	b.Expect(ok)
	spoofed := ethtest.UDPFrame(b.MAC, a.MAC, memberIP(9), b.IP, 1, 2, payload(10))
	a.Send(spoofed)
	waitDrop(t, s, DropSrcIP, 1)
	got := r1.waitN(t, 2)
	if !bytes.Equal(got[0], ok) || !bytes.Equal(got[1], spoofed) {
		t.Fatalf("tap saw other frames than were sent")
	}
	r2.waitN(t, 2)

	rm1()
	rm1() // a second call is harmless
	a.Send(ok)
	b.Expect(ok)
	r2.waitN(t, 3)
	r1.waitN(t, 2)
	rm2()
	if s.taps.Load() != nil {
		t.Fatal("taps left after every one was removed")
	}
}

func TestPortStats(t *testing.T) {
	s := newSwitch(t, Options{})
	attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	f := ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1, 2, payload(100))
	for range 3 {
		a.Send(f)
		b.Expect(f)
	}
	spoofed := ethtest.UDPFrame(b.MAC, a.MAC, memberIP(9), b.IP, 1, 2, payload(10))
	a.Send(spoofed)
	waitDrop(t, s, DropSrcIP, 1)
	byMAC := map[string]PortStats{}
	for _, ps := range s.PortStats() {
		byMAC[ps.MAC.String()] = ps
	}
	pa, pb := byMAC[a.MAC.String()], byMAC[b.MAC.String()]
	n := uint64(len(f))
	if pa.TxPackets != 4 || pa.TxBytes != 3*n+uint64(len(spoofed)) || pa.RxPackets != 0 || pa.Drops[DropSrcIP] != 1 {
		t.Errorf("sender: %+v", pa)
	}
	if pb.RxPackets != 3 || pb.RxBytes != 3*n || pb.TxPackets != 0 || len(pb.Drops) != 0 {
		t.Errorf("receiver: %+v", pb)
	}
	if st := s.Stats(); st.MemberInBytes != pa.TxBytes || st.MemberOutBytes != pb.RxBytes {
		t.Errorf("totals %+v do not add up to the ports'", st)
	}
}
