package relay

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// proxied returns a client connection whose bytes reach serve's accepted
// connection through relay.TCP between two kernel sockets (the splice path).
func proxied(t testing.TB, serve func(net.Conn)) net.Conn {
	t.Helper()
	return relayOne(t, serve).client
}

func echo(c net.Conn) {
	defer c.Close()
	io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
	c.(*net.TCPConn).CloseWrite()
}

func TestSpliceEchoHalfClose(t *testing.T) {
	c := proxied(t, echo)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	data := make([]byte, 16<<20)
	rand.Read(data)
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite() // the server sees EOF only through the relay's half-close
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v after %d bytes", err, len(got))
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo of %d bytes came back as %d bytes, not intact", len(data), len(got))
	}
}

// TestSpliceServerHalfClose: the server ends its side first and keeps
// reading; the client's bytes must still arrive.
func TestSpliceServerHalfClose(t *testing.T) {
	got := make(chan string, 1)
	c := proxied(t, func(s net.Conn) {
		defer s.Close()
		io.WriteString(s, "bye")
		s.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(s)
		got <- string(b)
	})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c) // EOF: the server's half-close came through
	if err != nil || string(b) != "bye" {
		t.Fatalf("client read %q, %v; want \"bye\" then EOF", b, err)
	}
	io.WriteString(c, "still here")
	c.(*net.TCPConn).CloseWrite()
	select {
	case s := <-got:
		if s != "still here" {
			t.Fatalf("server read %q after its half-close", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not get the client's bytes and EOF")
	}
}

// TestSpliceIdleHoldsNoPipe: connections that carry nothing hold no pipe,
// and the pipes of finished ones are kept for reuse, bounded.
func TestSpliceIdleHoldsNoPipe(t *testing.T) {
	base := pipeFDs(t) - 2*IdlePipes() // stdout and stderr may be pipes
	var conns []net.Conn
	for range 20 {
		c := proxied(t, echo)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "x")
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// 20 open, idle, relayed connections: every pipe is back in the idle
	// pool once each relay has found its source empty again.
	held := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if held = pipeFDs(t) - 2*IdlePipes() - base; held == 0 {
			break
		}
	}
	if held != 0 {
		t.Errorf("20 idle relayed connections hold %d pipe descriptors", held)
	}
	for _, c := range conns {
		c.Close()
	}
	if n := IdlePipes(); n > maxIdlePipes {
		t.Errorf("%d idle pipes kept, want at most %d", n, maxIdlePipes)
	}
}

// pipeFDs counts this process's pipe descriptors.
func pipeFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// BenchmarkRelay moves bytes one way through a relay between two kernel
// sockets (the splice path). The receiver reads 256 KiB at a time: with
// io.Copy's small reads the receiver, not the relay, is what is measured.
func BenchmarkRelay(b *testing.B) {
	sink := make(chan int64, 1)
	c := proxied(b, func(s net.Conn) {
		n, _ := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{s}, make([]byte, 256<<10))
		s.Close()
		sink <- n
	})
	buf := bytes.Repeat([]byte{'x'}, 256<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	<-sink
}

// pingPong sends a 16-byte message through the relay to an echo server
// and reads it back: a request and its answer, the small-exchange path.
func pingPong(t testing.TB, c net.Conn, msg, back []byte) {
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatal(err)
	}
}

// TestSmallExchangeAllocatesNothing: a request and its answer cost the
// relay no heap allocation (each used to cost several: the callbacks its
// reads and writes hand the runtime, made anew for every message, were
// most of the relay's allocations under keep-alive HTTP).
func TestSmallExchangeAllocatesNothing(t *testing.T) {
	c := proxied(t, echo)
	msg, back := []byte("0123456789abcdef"), make([]byte, 16)
	pingPong(t, c, msg, back) // the pools fill
	if n := testing.AllocsPerRun(200, func() { pingPong(t, c, msg, back) }); n >= 1 {
		t.Errorf("%.1f allocations per exchange in this process (the relay's two directions, the echo server, the client); want none", n)
	}
}

// BenchmarkRelayPingPong is a 16-byte request and its answer through the
// relay, one at a time.
func BenchmarkRelayPingPong(b *testing.B) {
	c := proxied(b, echo)
	msg, back := []byte("0123456789abcdef"), make([]byte, 16)
	b.ReportAllocs()
	for range b.N {
		pingPong(b, c, msg, back)
	}
}
