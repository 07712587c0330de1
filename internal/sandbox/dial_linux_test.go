package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dialServeEnv makes this test binary, run as a sandbox's command, serve
// the dial tests' ports instead of testing (see init).
const dialServeEnv = "SBTEST_DIAL_SERVE"

// Ports the command serves inside the sandbox: on 127.0.0.1 only, on the
// member's address only; dialClosed has nothing.
const (
	dialLoTCP   = 7101
	dialEthTCP  = 7102
	dialClosed  = 7103
	dialMember  = "10.0.2.100"
	dialLoopbak = "127.0.0.1"
)

func init() {
	if os.Getenv(dialServeEnv) == "" || IsChild() {
		return
	}
	serveDialTests()
	os.Exit(0)
}

// serveDialTests: per connection "from IP:PORT\n", then echo until EOF,
// then a half-close.
func serveDialTests() {
	for _, a := range []string{fmt.Sprintf("%s:%d", dialLoopbak, dialLoTCP), fmt.Sprintf("%s:%d", dialMember, dialEthTCP)} {
		l, err := net.Listen("tcp4", a)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					fmt.Fprintf(c, "from %s\n", c.RemoteAddr())
					io.Copy(c, c)
					c.(*net.TCPConn).CloseWrite()
				}()
			}
		}()
	}
	fmt.Println("serving")
	select {}
}

func startDialSandbox(t *testing.T) *testSandbox {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(dialServeEnv, "1")
	ts := startSandbox(t, false, self)
	ts.stdout.waitFor(t, "serving")
	return ts
}

func countOwnFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// exchange sends msg, half-closes and reads to EOF.
func exchange(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, msg)
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}

func TestInsideDialer(t *testing.T) {
	ts := startDialSandbox(t)
	lo, member := netip.MustParseAddr(dialLoopbak), netip.MustParseAddr(dialMember)

	for _, pool := range []bool{true, false} {
		t.Run(fmt.Sprintf("pool=%v", pool), func(t *testing.T) {
			if !pool {
				old := poolBatch
				poolBatch = 0
				t.Cleanup(func() { poolBatch = old })
			}
			before := countOwnFDs(t)
			d, err := ts.InsideDialer(lo, member)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			c, err := d.DialTCP(ctx, dialLoTCP)
			if err != nil {
				t.Fatalf("DialTCP to a server on 127.0.0.1 only: %v", err)
			}
			if _, ok := c.(*net.TCPConn); !ok {
				t.Errorf("DialTCP gave a %T, want a kernel socket (*net.TCPConn)", c)
			}
			if got := exchange(t, c, "hi"); !strings.HasPrefix(got, "from 127.0.0.1:") || !strings.HasSuffix(got, "\nhi") {
				t.Errorf("through 127.0.0.1: %q", got)
			}
			c, err = d.DialTCP(ctx, dialEthTCP)
			if err != nil {
				t.Fatalf("DialTCP to a server on %s only (127.0.0.1 refuses): %v", dialMember, err)
			}
			if got := exchange(t, c, "eth"); !strings.HasPrefix(got, "from "+dialMember+":") || !strings.HasSuffix(got, "\neth") {
				t.Errorf("through %s: %q", dialMember, got)
			}
			start := time.Now()
			_, err = d.DialTCP(ctx, dialClosed)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("DialTCP to a closed port: %v, want ECONNREFUSED", err)
			}
			if el := time.Since(start); el > time.Second {
				t.Errorf("a refusal took %v", el)
			}

			// Many at once, pipelined / from the pool and beyond it.
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for i := range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := d.DialTCP(ctx, dialLoTCP)
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					msg := fmt.Sprint("m", i)
					io.WriteString(c, msg)
					c.(*net.TCPConn).CloseWrite()
					b, err := io.ReadAll(c)
					if err != nil || !strings.HasSuffix(string(b), "\n"+msg) {
						errs <- fmt.Errorf("connection %d: %q, %v", i, b, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}

			d.Close()
			if _, err := d.DialTCP(ctx, dialLoTCP); !errors.Is(err, ErrDialChannelClosed) {
				t.Errorf("DialTCP after Close: %v", err)
			}
			if after := countOwnFDs(t); after > before {
				t.Errorf("%d descriptors before, %d after Close", before, after)
			}
		})
	}

	t.Run("sandbox ends", func(t *testing.T) {
		d, err := ts.InsideDialer(lo)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		ts.Kill()
		select {
		case <-d.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the dial channel did not end with the sandbox")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c, err := d.DialTCP(ctx, dialLoTCP); err == nil {
			c.Close()
			t.Error("DialTCP worked after the sandbox ended")
		}
		if _, err := ts.InsideDialer(lo); !errors.Is(err, ErrNotRunning) {
			t.Errorf("InsideDialer after the end: %v, want ErrNotRunning", err)
		}
	})
}
