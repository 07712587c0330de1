package pcap

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
)

// TestCaptureWritesPcap: the frames that pass the filter come back out of
// pcapgo's reader, cut to the snaplen, with their original length.
func TestCaptureWritesPcap(t *testing.T) {
	var out bytes.Buffer
	f, err := ParseFilter("udp")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(&out, Options{Snaplen: 60, Count: 2, Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	small := ethtest.UDPFrame(macB, macA, ipA, ipB, 1, 2, []byte("hi"))
	big := ethtest.UDPFrame(macB, macA, ipA, ipB, 1, 2, make([]byte, 100))
	c.Tap(tcpFrame(1, 2)) // filtered out
	c.Tap(small)
	c.Tap(big)
	c.Tap(small) // past the count
	res, err := c.Run(context.Background())
	if err != nil || res.Written != 2 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	r, err := pcapgo.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Snaplen() != 60 {
		t.Fatalf("header: link type %v, snaplen %d", r.LinkType(), r.Snaplen())
	}
	data, ci, err := r.ReadPacketData()
	if err != nil || !bytes.Equal(data, small) || ci.Length != len(small) {
		t.Fatalf("first record: %x (%+v), %v", data, ci, err)
	}
	data, ci, err = r.ReadPacketData()
	if err != nil || !bytes.Equal(data, big[:60]) || ci.Length != len(big) || ci.CaptureLength != 60 {
		t.Fatalf("second record: %d bytes (%+v), %v", len(data), ci, err)
	}
	if _, _, err := r.ReadPacketData(); err == nil {
		t.Fatal("a third record was written past --count")
	}
}

// TestCaptureStopsWithContext: frames queued before the end are written;
// the tap is a no-op afterwards; a full queue counts drops.
func TestCaptureStopsWithContext(t *testing.T) {
	var out bytes.Buffer
	c, err := New(&out, Options{Match: func(f []byte) bool { return f[0] == macB[0] }})
	if err != nil {
		t.Fatal(err)
	}
	frame := ethtest.UDPFrame(macB, macA, ipA, ipB, 1, 2, nil)
	for range queueLen + 5 {
		c.Tap(frame)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, err := c.Run(ctx)
	if err != nil || res.Written != queueLen || res.Dropped != 5 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	c.Tap(frame)
	if len(c.q) != 0 {
		t.Fatal("a stopped capture still queues frames")
	}
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(b []byte) (int, error) {
	if w.n == 0 {
		return 0, errors.New("disk full")
	}
	w.n--
	return len(b), nil
}

func TestCaptureWriteError(t *testing.T) {
	if _, err := New(&failingWriter{}, Options{}); err == nil {
		t.Fatal("New wrote no header and said nothing")
	}
	c, err := New(&failingWriter{n: 1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Tap(ethtest.UDPFrame(macB, macA, ipA, ipB, 1, 2, nil))
	if _, err := c.Run(context.Background()); err == nil {
		t.Fatal("a failed write did not end the capture with an error")
	}
	for _, o := range []Options{{Snaplen: 10}, {Snaplen: DefaultSnaplen + 1}, {Count: -1}} {
		if _, err := New(&bytes.Buffer{}, o); err == nil {
			t.Errorf("New(%+v) took it", o)
		}
	}
}
