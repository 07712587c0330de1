package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// The dial channel: a SOCK_SEQPACKET socketpair between the agent inside a
// sandbox and whoever serves the sandbox's published ports (the supervisor
// of a private network, or the daemon), over which that process gets TCP
// sockets of the sandbox's network namespace (the loopback fast path; see
// docs/ARCHITECTURE.md, Data paths). One fixed-layout binary frame per
// packet, little-endian, so that a dial costs no JSON:
//
//	request  -> id u64 | proto u8 (6: tcp) | n u8 (1..4) | port u16 | n x 16-byte address (IPv4 as ::ffff:a.b.c.d)
//	            or, with n = 0, id u64 | 6 | 0 | count u16 (1..64): unconnected sockets wanted
//	reply    <- id u64 | errno u32 (0: the socket(s) come as fds) | index u8 of the address used
const (
	dialHeader = 12
	// MaxDialAddrs bounds the addresses one dial tries.
	MaxDialAddrs = 4
	// MaxDialRequest is the size of the largest request frame.
	MaxDialRequest = dialHeader + 16*MaxDialAddrs
	// DialReplySize is the size of every reply frame.
	DialReplySize = 13
	// MaxPoolBatch bounds the sockets one reply carries (SCM_RIGHTS takes 253).
	MaxPoolBatch = 64
)

// DialRequest asks the agent for a socket connected to Port at the first of
// Addrs that does not refuse, or, with Pool > 0, for Pool unconnected TCP
// sockets.
type DialRequest struct {
	ID    uint64
	Addrs []netip.Addr
	Port  uint16
	Pool  int
}

// Encode lays the request out as a frame.
func (r DialRequest) Encode() ([]byte, error) {
	b := make([]byte, dialHeader, MaxDialRequest)
	binary.LittleEndian.PutUint64(b[0:], r.ID)
	b[8] = unix.IPPROTO_TCP
	if r.Pool > 0 {
		if r.Pool > MaxPoolBatch || len(r.Addrs) > 0 {
			return nil, fmt.Errorf("dial channel: a pool request takes 1 to %d sockets and no address", MaxPoolBatch)
		}
		binary.LittleEndian.PutUint16(b[10:], uint16(r.Pool))
		return b, nil
	}
	if len(r.Addrs) < 1 || len(r.Addrs) > MaxDialAddrs {
		return nil, fmt.Errorf("dial channel: a dial takes 1 to %d addresses, not %d", MaxDialAddrs, len(r.Addrs))
	}
	b[9] = byte(len(r.Addrs))
	binary.LittleEndian.PutUint16(b[10:], r.Port)
	for _, a := range r.Addrs {
		a16 := a.As16()
		b = append(b, a16[:]...)
	}
	return b, nil
}

// DecodeDialRequest reads a request frame. A bad one still yields its id
// (when it has one), so that the agent can answer it with EINVAL.
func DecodeDialRequest(b []byte) (DialRequest, error) {
	var r DialRequest
	if len(b) >= 8 {
		r.ID = binary.LittleEndian.Uint64(b[0:])
	}
	if len(b) < dialHeader {
		return r, errors.New("dial channel: request too short")
	}
	proto, n, arg := b[8], int(b[9]), binary.LittleEndian.Uint16(b[10:])
	switch {
	case proto != unix.IPPROTO_TCP:
		return r, fmt.Errorf("dial channel: protocol %d, only TCP", proto)
	case n == 0:
		if len(b) != dialHeader || arg < 1 || arg > MaxPoolBatch {
			return r, fmt.Errorf("dial channel: a pool request takes 1 to %d sockets", MaxPoolBatch)
		}
		r.Pool = int(arg)
		return r, nil
	case n > MaxDialAddrs || len(b) != dialHeader+16*n:
		return r, fmt.Errorf("dial channel: request of %d bytes for %d addresses", len(b), n)
	}
	r.Port = arg
	for i := range n {
		r.Addrs = append(r.Addrs, netip.AddrFrom16([16]byte(b[dialHeader+16*i:])).Unmap())
	}
	return r, nil
}

// DialReply answers a DialRequest: Errno 0 with the socket(s) as
// descriptors, else why not; Index is the address that was used, or that
// failed last.
type DialReply struct {
	ID    uint64
	Errno syscall.Errno
	Index int
}

// Encode lays the reply out as a frame.
func (r DialReply) Encode() []byte {
	b := make([]byte, DialReplySize)
	binary.LittleEndian.PutUint64(b[0:], r.ID)
	binary.LittleEndian.PutUint32(b[8:], uint32(r.Errno))
	b[12] = byte(r.Index)
	return b
}

// DecodeDialReply reads a reply frame.
func DecodeDialReply(b []byte) (DialReply, error) {
	if len(b) != DialReplySize {
		return DialReply{}, fmt.Errorf("dial channel: reply of %d bytes, want %d", len(b), DialReplySize)
	}
	return DialReply{
		ID:    binary.LittleEndian.Uint64(b[0:]),
		Errno: syscall.Errno(binary.LittleEndian.Uint32(b[8:])),
		Index: int(b[12]),
	}, nil
}
