package wire

import (
	"net/netip"
	"reflect"
	"syscall"
	"testing"
)

func TestDialFramesRoundTrip(t *testing.T) {
	for _, r := range []DialRequest{
		{ID: 1, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: 80},
		{ID: 1 << 40, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("172.17.0.2")}, Port: 65535},
		{ID: 7, Pool: 16},
	} {
		b, err := r.Encode()
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		got, err := DecodeDialRequest(b)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("%+v: decoded %+v, %v", r, got, err)
		}
	}
	rep := DialReply{ID: 9, Errno: syscall.ECONNREFUSED, Index: 2}
	if got, err := DecodeDialReply(rep.Encode()); err != nil || got != rep {
		t.Errorf("reply %+v: decoded %+v, %v", rep, got, err)
	}
}

func TestDialFramesRefuseBadOnes(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, r := range []DialRequest{
		{ID: 1}, // no address
		{ID: 1, Addrs: []netip.Addr{lo, lo, lo, lo, lo}}, // too many
		{ID: 1, Pool: MaxPoolBatch + 1},
		{ID: 1, Pool: 2, Addrs: []netip.Addr{lo}},
	} {
		if _, err := r.Encode(); err == nil {
			t.Errorf("Encode(%+v): want an error", r)
		}
	}
	good, _ := DialRequest{ID: 5, Addrs: []netip.Addr{lo}, Port: 80}.Encode()
	udp := append([]byte(nil), good...)
	udp[8] = 17
	longer := append(append([]byte(nil), good...), 0)
	poolZero, _ := DialRequest{ID: 5, Pool: 1}.Encode()
	poolZero[10], poolZero[11] = 0, 0
	for name, b := range map[string][]byte{
		"short": good[:11], "udp": udp, "length off": longer, "count past the frame": good[:dialHeader], "pool of 0": poolZero,
	} {
		r, err := DecodeDialRequest(b)
		if err == nil {
			t.Errorf("%s: decoded %+v; want an error", name, r)
		}
		if len(b) >= 8 && r.ID != 5 {
			t.Errorf("%s: the id of a bad request is lost (%d)", name, r.ID)
		}
	}
	if _, err := DecodeDialReply(make([]byte, DialReplySize-1)); err == nil {
		t.Error("a short reply decoded")
	}
}
