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

	"github.com/netns-run/netns-run/forward/relay"
	"github.com/netns-run/netns-run/internal/agent"
	"github.com/netns-run/netns-run/internal/dialchan"
	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
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
	if os.Getenv(dialServeEnv) == "" || agent.IsChild() {
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
	c.(interface{ CloseWrite() error }).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}

// TestDialChannel: a dialchan.Dialer over the sandbox's dial channels
// reaches servers inside on 127.0.0.1 and on the member's own address
// (seen there as 127.0.0.1 too), gets refusals at once, and keeps no
// descriptor after Close.
func TestDialChannel(t *testing.T) {
	ts := startDialSandbox(t)
	lo, member := netip.MustParseAddr(dialLoopbak), netip.MustParseAddr(dialMember)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("dialer", func(t *testing.T) {
		before := countOwnFDs(t)
		d, err := dialchan.New(ts.OpenDialChannel, lo, member)
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.DialLocal(ctx, dialLoTCP)
		if err != nil {
			t.Fatalf("DialLocal to a server on 127.0.0.1 only: %v", err)
		}
		if _, ok := c.(relay.DetachedSocket); !ok {
			t.Errorf("DialLocal gave a %T, want a kernel socket the relay's event loop takes (relay.DetachedSocket)", c)
		}
		if got := exchange(t, c, "hi"); !strings.HasPrefix(got, "from 127.0.0.1:") || !strings.HasSuffix(got, "\nhi") {
			t.Errorf("through 127.0.0.1: %q", got)
		}
		c, err = d.DialLocal(ctx, dialEthTCP)
		if err != nil {
			t.Fatalf("DialLocal to a server on %s only (127.0.0.1 refuses): %v", dialMember, err)
		}
		if got := exchange(t, c, "eth"); !strings.HasPrefix(got, "from 127.0.0.1:") || !strings.HasSuffix(got, "\neth") {
			t.Errorf("through %s: %q; want it seen as 127.0.0.1", dialMember, got)
		}
		start := time.Now()
		if _, err = d.DialLocal(ctx, dialClosed); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("DialLocal to a closed port: %v, want ECONNREFUSED", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("a refusal took %v", el)
		}
		// Many at once: from the pool and beyond it, through the agent.
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				port := uint16(dialLoTCP)
				if i%2 == 1 {
					port = dialEthTCP
				}
				c, err := d.DialLocal(ctx, port)
				if err != nil {
					errs <- err
					return
				}
				msg := fmt.Sprint("m", i)
				if got := exchange(t, c, msg); !strings.HasPrefix(got, "from 127.0.0.1:") || !strings.HasSuffix(got, "\n"+msg) {
					errs <- fmt.Errorf("connection %d: %q", i, got)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		d.Close()
		if _, err := d.DialLocal(ctx, dialLoTCP); !errors.Is(err, dialchan.ErrClosed) {
			t.Errorf("DialLocal after Close: %v", err)
		}
		if after := countOwnFDs(t); after > before {
			t.Errorf("%d descriptors before, %d after Close", before, after)
		}
	})

	// The agent's half, frame by frame: dials (through each address in
	// turn), refusals, pool batches and bad requests.
	t.Run("agent", func(t *testing.T) {
		f, err := ts.OpenDialChannel()
		if err != nil {
			t.Fatal(err)
		}
		conn, err := wire.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ask := func(req wire.DialRequest, raw []byte) (wire.DialReply, []int) {
			t.Helper()
			if raw == nil {
				var err error
				if raw, err = req.Encode(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := conn.Write(raw); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf, oob := make([]byte, 64), make([]byte, unix.CmsgSpace(4*wire.MaxPoolBatch))
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				t.Fatal(err)
			}
			fds, _ := wire.ParseRights(oob[:oobn])
			r, err := wire.DecodeDialReply(buf[:n])
			if err != nil {
				t.Fatal(err)
			}
			return r, fds
		}
		r, fds := ask(wire.DialRequest{ID: 1, Addrs: []netip.Addr{lo, member}, Port: dialEthTCP}, nil)
		if r.ID != 1 || r.Errno != 0 || r.Index != 1 || len(fds) != 1 {
			t.Fatalf("dial to the member's address: %+v with %d fds", r, len(fds))
		}
		sock := os.NewFile(uintptr(fds[0]), "inside")
		c, err := net.FileConn(sock)
		sock.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := exchange(t, c, "raw"); !strings.HasPrefix(got, "from 127.0.0.1:") {
			t.Errorf("the agent's socket to %s: %q; want it from 127.0.0.1", dialMember, got)
		}
		if r, fds := ask(wire.DialRequest{ID: 2, Addrs: []netip.Addr{lo, member}, Port: dialClosed}, nil); r.ID != 2 || r.Errno != unix.ECONNREFUSED || r.Index != 1 || len(fds) != 0 {
			t.Errorf("dial to a closed port: %+v with %d fds", r, len(fds))
		}
		r, fds = ask(wire.DialRequest{ID: 3, Pool: 4}, nil)
		wire.CloseFDs(fds)
		if r.ID != 3 || r.Errno != 0 || len(fds) != 4 {
			t.Errorf("a pool of 4: %+v with %d fds", r, len(fds))
		}
		bad, _ := wire.DialRequest{ID: 4, Addrs: []netip.Addr{lo}, Port: 80}.Encode()
		bad[8] = unix.IPPROTO_UDP
		if r, fds := ask(wire.DialRequest{}, bad); r.ID != 4 || r.Errno != unix.EINVAL || len(fds) != 0 {
			t.Errorf("a UDP dial: %+v with %d fds; want EINVAL", r, len(fds))
		}
	})

	t.Run("sandbox ends", func(t *testing.T) {
		d, err := dialchan.New(ts.OpenDialChannel, lo)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if c, err := d.DialLocal(ctx, dialLoTCP); err != nil {
			t.Fatal(err)
		} else {
			c.Close()
		}
		ts.Kill()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := d.DialLocal(ctx, dialLoTCP)
			if err != nil {
				if errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("after the sandbox ended: %v; want no refusal (the gVisor path)", err)
				}
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatal("DialLocal still works after the sandbox ended")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := ts.OpenDialChannel(); !errors.Is(err, ErrNotRunning) {
			t.Errorf("OpenDialChannel after the end: %v, want ErrNotRunning", err)
		}
	})
}
