//go:build linux

// Package relay moves bytes between two connections: a sandbox's
// connection inside the gVisor stack and its counterpart on the host.
package relay

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Copy buffers, pooled. A flow starts with a small one and moves to a bulk
// one once a read fills the small one, so that request/response traffic
// holds little memory and bulk transfers make few calls: netstack costs per
// call, not per byte. World client -> published port through gVisor, iperf3,
// 2 cores, 3 interleaved runs each (Gbit/s, median of forward / -R): 64 KiB
// 7.4 / 6.5, 256 KiB 7.7 / 6.5, 1 MiB 9.8 / 8.4 (see docs/ARCHITECTURE.md,
// Measured facts: Copy buffers).
const (
	smallBufSize = 32 << 10
	bulkBufSize  = 1 << 20
)

// The most a TCP relay holds in copy buffers, both ways together, for
// those who bound what a connection may buffer.
const (
	MaxBufferedTCP      = 2 * bulkBufSize
	MaxBufferedTCPSmall = 2 * smallBufSize
)

var (
	smallBuffers = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	bulkBuffers  = sync.Pool{New: func() any { b := make([]byte, bulkBufSize); return &b }}
)

// halfCloser is a connection that can end one direction (TCP FIN).
type halfCloser interface {
	CloseWrite() error
}

// TCP copies both ways until both directions have ended, passing each
// end-of-stream on as a half-close, then closes both connections. It
// returns the bytes it moved each way. Two kernel sockets are relayed by
// the process's event loop (loop_linux.go), anything else by a goroutine
// a direction.
func TCP(a, b net.Conn) (aToB, bToA int64) {
	return relayTCP(a, b, true)
}

// TCPSmall is TCP with the small copy buffer only, never the bulk one: a
// connection whose reader may stall holds at most smallBufSize a
// direction here while its write waits (the gateway's connections past a
// member's first few: a member that stops reading would otherwise make
// each hold a bulk buffer). Between kernel sockets it is TCP.
func TCPSmall(a, b net.Conn) (aToB, bToA int64) {
	return relayTCP(a, b, false)
}

// TCPThen is TCP without holding the caller: it returns at once, and done
// gets the bytes moved each way once both connections are closed. On the
// event loop done is called on the loop's thread: it must not block.
func TCPThen(a, b net.Conn, done func(aToB, bToA int64)) {
	if !kernelSocket(a) || !kernelSocket(b) || !loopTCP(a, b, done) {
		go func() { done(relayCopies(a, b, true)) }()
	}
}

func relayTCP(a, b net.Conn, bulk bool) (aToB, bToA int64) {
	if kernelSocket(a) && kernelSocket(b) {
		// Only here the wait for the loop's callback is made: a gVisor
		// connection (the NAT's, every one) goes straight to the copies.
		ended := make(chan struct{})
		if loopTCP(a, b, func(ab, ba int64) { aToB, bToA = ab, ba; close(ended) }) {
			<-ended
			return aToB, bToA
		}
	}
	return relayCopies(a, b, bulk)
}

// DetachedSocket is a connected kernel TCP socket that Go's poller does
// not hold, which the event loop takes as it is: TakeFD hands its
// descriptor over (non-blocking), or says false when it can no longer
// (it has been used as a connection since). internal/dialchan's sockets
// made inside a sandbox are such.
type DetachedSocket interface {
	net.Conn
	TakeFD() (fd int, ok bool)
}

// kernelSocket: c is one the event loop can take (loopTCP).
func kernelSocket(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, DetachedSocket:
		return true
	}
	return false
}

// relayCopies relays a and b with a goroutine a direction, copying
// through pooled buffers.
func relayCopies(a, b net.Conn, bulk bool) (aToB, bToA int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA = copyHalf(a, b, bulk)
	}()
	aToB = copyHalf(b, a, bulk)
	wg.Wait()
	a.Close()
	b.Close()
	return aToB, bToA
}

// copyHalf copies src to dst, then half-closes dst, and returns the bytes
// written. On an error (reset) it closes both so the other direction ends
// too.
func copyHalf(dst, src net.Conn, bulk bool) int64 {
	n, err := copyPooled(dst, src, bulk)
	if err != nil {
		dst.Close()
		src.Close()
		return n
	}
	if hc, ok := dst.(halfCloser); ok {
		hc.CloseWrite()
	} else {
		dst.Close()
	}
	return n
}

// copyPooled copies with pooled buffers (the bulk one only if bulk),
// taken only once the first byte has arrived, so that idle connections
// hold none (see docs/ARCHITECTURE.md, Measured facts: Copy buffers). It
// writes through dst.Write and reads through src.Read: net.TCPConn's
// ReadFrom would use a 32 KiB buffer of its own.
func copyPooled(dst io.Writer, src io.Reader, bulk bool) (written int64, err error) {
	var first [1]byte
	n, err := src.Read(first[:])
	if n > 0 {
		if _, werr := dst.Write(first[:n]); werr != nil {
			return 0, werr
		}
		written = int64(n)
	}
	if err != nil {
		return written, eofIsNil(err)
	}
	pool := &smallBuffers
	bp := pool.Get().(*[]byte)
	defer func() { pool.Put(bp) }()
	for {
		buf := *bp
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return written, werr
			}
			written += int64(n)
		}
		if err != nil {
			return written, eofIsNil(err)
		}
		if bulk && n == len(buf) && pool == &smallBuffers {
			// A bulk flow: more was waiting than the small buffer holds.
			pool.Put(bp)
			pool = &bulkBuffers
			bp = pool.Get().(*[]byte)
		}
	}
}

func eofIsNil(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
