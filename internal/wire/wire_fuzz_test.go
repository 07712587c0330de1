package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// messageKinds are the types every process decodes packets into: what the
// daemon reads from a client (Hello, then Request or Attach), a supervisor
// from its control socket (ControlRequest), the agent and the supervisor
// from each other (AgentMessage), and the clients' replies.
var messageKinds = []struct {
	name string
	make func() any
}{
	{"Hello", func() any { return new(Hello) }},
	{"Request", func() any { return new(Request) }},
	{"ControlRequest", func() any { return new(ControlRequest) }},
	{"AgentMessage", func() any { return new(AgentMessage) }},
	{"Joined", func() any { return new(Joined) }},
	{"Reply", func() any { return new(Reply) }},
	{"ControlReply", func() any { return new(ControlReply) }},
	{"AttachStatus", func() any { return new(AttachStatus) }},
	{"CaptureStatus", func() any { return new(CaptureStatus) }},
	{"Attach", func() any { return new(Attach) }},
}

// FuzzRecv writes raw packets, with a descriptor or without, to a
// SOCK_SEQPACKET socket and decodes them as every message kind with the
// Recv the processes use. A bad packet is a *DecodeError whose descriptor
// is closed, a good one passes its union check and reads back the same
// once sent again, and a packet over the bound is refused.
func FuzzRecv(f *testing.F) {
	f.Add([]byte(`{"join":{"sandbox_id":"abc","name":"web","network":"net1","ip":"10.1.0.5","ports":[{"host_port":8080,"container_port":80,"proto":"tcp"}],"links":[{"name":"db","alias":"x"}]}}`), false)
	f.Add([]byte(`{"request":{"sandbox_id":"abc","add_ports":[{"host_ip":"::1","host_port":0,"container_port":53,"proto":"udp"}]}}`), true)
	f.Add([]byte(`{"lease":{"sandbox_id":"a","network":"n","ip":"10.0.0.2"},"capture":{"network":"n"}}`), false)
	f.Add([]byte(`{"connect":{"network":"n","ip":"10.0.0.9","aliases":["a"]}}`), false)
	f.Add([]byte(`{"attach":{"detach_keys":"EBE=","stdin":true}}`), true)
	f.Add([]byte(`{"spec":{"hostname":"h","files":{"/etc/hosts":"MTI3LjAuMC4x"},"argv":["sh"],"env":null,"loopback_tcp":[80]}}`), false)
	f.Add([]byte(`{"exec":{"id":3,"argv":["ls"],"env":["A=1"],"tty":true}}`), true)
	f.Add([]byte(`{"network":{"name":"n","subnet":"10.0.0.0/24"},"ip":"10.0.0.2","link_hosts":[{"IP":"10.0.0.3","Names":["db"]}]}`), false)
	f.Add([]byte(`{"error":"x","networks":[{"network":"n","members":[{"drops":{"a":1}}]}]}`), false)
	f.Add([]byte(`{}`), false)
	f.Add([]byte(`null`), false)
	f.Add([]byte(`{"join":{"ip":"999.1.1.1"}}`), false)
	f.Add([]byte{}, true)

	send, recv := fuzzPair(f)
	f.Fuzz(func(t *testing.T, packet []byte, withFD bool) {
		for _, kind := range messageKinds {
			v := kind.make()
			fds, err := recvRaw(t, send, recv, packet, withFD, func() ([]int, error) { return Recv(recv, v) })
			switch {
			case len(packet) == 0 && !withFD:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("%s: an empty packet gave %v, want io.EOF (the peer gone)", kind.name, err)
				}
				continue
			case err != nil:
				var bad *DecodeError
				if !errors.As(err, &bad) {
					t.Fatalf("%s: %q gave %T %v, want a *DecodeError", kind.name, packet, err, err)
				}
				continue
			}
			if len(fds) != btoi(withFD) {
				t.Fatalf("%s: %d descriptors came, %d were sent", kind.name, len(fds), btoi(withFD))
			}
			CloseFDs(fds)
			if val, ok := v.(Validator); ok && val.Validate() != nil {
				t.Fatalf("%s: Recv took %q, which fails its own check", kind.name, packet)
			}
			checkResend(t, kind.name, send, recv, v, kind.make())
		}
		// The bound: a packet one byte over it is refused, whatever it holds.
		if len(packet) > 0 {
			_, err := recvRaw(t, send, recv, packet, withFD, func() ([]int, error) {
				return recvBounded(recv, new(Hello), len(packet)-1, MaxFDs)
			})
			var bad *DecodeError
			if !errors.As(err, &bad) {
				t.Fatalf("a %d-byte packet over a %d-byte bound gave %v, want a *DecodeError", len(packet), len(packet)-1, err)
			}
		}
	})
}

// recvRaw writes packet (and a pipe's read end, if withFD) to send and
// runs recv on the other end. When recv fails, no descriptor may stay
// open.
func recvRaw(t *testing.T, send *os.File, recv *net.UnixConn, packet []byte, withFD bool, recvFn func() ([]int, error)) ([]int, error) {
	t.Helper()
	var oob []byte
	var pipe [2]int
	if withFD {
		if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(pipe[0])
		defer unix.Close(pipe[1])
		oob = unix.UnixRights(pipe[0])
	}
	before := countFDs(t)
	sendRaw(t, send, packet, oob)
	fds, err := recvFn()
	if err != nil && countFDs(t) != before {
		t.Fatalf("a refused packet (%v) left a descriptor open", err)
	}
	return fds, err
}

// sendRaw sends one packet as a hostile peer could: unlike
// unix.Sendmsg, which adds a byte to an empty packet with descriptors,
// it can send descriptors with no data at all.
func sendRaw(t *testing.T, send *os.File, packet, oob []byte) {
	t.Helper()
	var msg unix.Msghdr
	var iov unix.Iovec
	if len(packet) > 0 {
		iov.Base = &packet[0]
		iov.SetLen(len(packet))
		msg.Iov, msg.Iovlen = &iov, 1
	}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	if _, _, errno := unix.Syscall(unix.SYS_SENDMSG, send.Fd(), uintptr(unsafe.Pointer(&msg)), 0); errno != 0 {
		t.Fatalf("sendmsg: %v", errno)
	}
}

// checkResend sends v as a message and receives it into fresh: it must
// come back as it went.
func checkResend(t *testing.T, kind string, send *os.File, recv *net.UnixConn, v, fresh any) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: a decoded message does not encode: %v", kind, err)
	}
	if len(want) > MaxMessage {
		return // escaping grew it past the bound: Send refuses it, rightly
	}
	if err := unix.Sendmsg(int(send.Fd()), want, nil, nil, 0); err != nil {
		t.Fatalf("sendmsg: %v", err)
	}
	if _, err := Recv(recv, fresh); err != nil {
		t.Fatalf("%s: %s, as encoded, does not decode: %v", kind, want, err)
	}
	got, err := json.Marshal(fresh)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: sent %s, received %s (%v)", kind, want, got, err)
	}
}

// fuzzPair is a connected SOCK_SEQPACKET pair for the whole fuzz run:
// the raw sending end and the receiving connection.
func fuzzPair(f *testing.F) (*os.File, *net.UnixConn) {
	f.Helper()
	recv, peer, err := SocketPair("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { recv.Close(); peer.Close() })
	return peer, recv
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzDialFrames decodes raw dial-channel frames as the agent (requests)
// and the supervisor or daemon (replies) do: a frame taken encodes back to
// the same bytes, and a refused request still yields its id.
func FuzzDialFrames(f *testing.F) {
	for _, r := range []DialRequest{
		{ID: 1, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: 80},
		{ID: 2, Addrs: []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("198.51.100.2")}, Port: 8080},
		{ID: 3, Pool: MaxPoolBatch},
	} {
		b, err := r.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(DialReply{ID: 4, Errno: unix.ECONNREFUSED, Index: 1}.Encode())
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeDialRequest(b)
		if len(b) >= 8 && r.ID != binary.LittleEndian.Uint64(b) {
			t.Fatalf("request %x: id %d, want the frame's", b, r.ID)
		}
		if err == nil {
			if len(r.Addrs) > MaxDialAddrs || (r.Pool > 0) == (len(r.Addrs) > 0) || r.Pool > MaxPoolBatch {
				t.Fatalf("request %x taken as %+v", b, r)
			}
			again, err := r.Encode()
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("request %x taken as %+v encodes as %x, %v", b, r, again, err)
			}
		}
		rep, err := DecodeDialReply(b)
		if err == nil && !bytes.Equal(rep.Encode(), b) {
			t.Fatalf("reply %x taken as %+v encodes as %x", b, rep, rep.Encode())
		}
	})
}
