package slirp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

// call is one API client connection, as Podman and RootlessKit make it.
func call(t *testing.T, path, req string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	c.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The API's requests and errors, against a real socket. Forwards are
// bound on the host's loopback here but never served: no gateway.
func TestAPI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	fwd := newForwards(nil, netip.MustParseAddr("10.0.2.100"))
	a, err := listenAPI(path, fwd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.serve(ctx); close(done) }()
	defer func() { cancel(); <-done; a.close() }()

	free := func() int {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	p1, p2 := free(), free()
	add := `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"%s","guest_port":80}}` + "\n"
	for _, c := range []struct{ req, want string }{
		{fmt.Sprintf(add, p1, ""), `{"return":{"id":1}}`},
		{fmt.Sprintf(add, p2, "10.0.2.5"), `{"return":{"id":2}}`},
		{fmt.Sprintf(add, p1, ""), `{"error":{"desc":"`}, // in use
		{`{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":1,"guest_port":1}}`, `proto must be tcp or udp`},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0,"guest_port":1}}`, `1 to 65535`},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"x","host_port":1,"guest_port":1}}`, `host_addr \"x\"`},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1,"guest_addr":"fd00::1","guest_port":1}}`, `not an IPv4 address`},
		{`{"execute":"list_hostfwd"}`, `"guest_addr":"10.0.2.100","guest_port":80},{"id":2,`},
		{`{"execute":"remove_hostfwd","arguments":{"id":1}}`, `{"return":{}}`},
		{`{"execute":"remove_hostfwd","arguments":{"id":1}}`, `no forward with id 1`},
		{`{"execute":"remove_hostfwd","arguments":{}}`, `wants {\"id\": N}`},
		{`{"execute":"list_hostfwd"}`, `{"return":{"entries":[{"id":2,`},
		{`{"execute":"list_hostfwd"}`, `]},"entries":[{"id":2,`}, // where slirp4netns 1.2.0 puts them
		{`{"execute":"shutdown"}`, `unknown execute \"shutdown\"`},
		{`{not json`, `{"error":{"desc":"bad request:`},
		{strings.Repeat("x", maxRequest+1), `larger than 4096 bytes`},
	} {
		got := call(t, path, c.req)
		if !strings.Contains(got, c.want) {
			t.Errorf("%.60s: %s; want %s", c.req, got, c.want)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(got), &v); err != nil {
			t.Errorf("%.60s: reply is no JSON: %s", c.req, got)
		}
	}
	// The removed forward's port is free again, the other one is held.
	if l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p1)); err != nil {
		t.Errorf("port of the removed forward: %v", err)
	} else {
		l.Close()
	}
	if l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p2)); err == nil {
		l.Close()
		t.Error("the port of a forward that was not removed is free")
	}
}

// A socket path too long for a unix socket address (Podman's, under a deep
// runtime directory) still works.
func TestAPILongPath(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 120 {
		dir = filepath.Join(dir, "deeper-and-deeper")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strings.Repeat("f", 64)+".net")
	a, err := listenAPI(path, newForwards(nil, netip.MustParseAddr("10.0.2.100")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.serve(ctx); close(done) }()
	addr, dirFD, err := wire.SocketAddr(path)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirFD)
	if got := call(t, addr, `{"execute":"list_hostfwd"}`); got != `{"return":{"entries":[]},"entries":[]}` {
		t.Errorf("list_hostfwd over a long path: %s", got)
	}
	cancel()
	<-done
	a.close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the socket is left after close: %v", err)
	}
}

// A second process does not take over a live API socket; a stale one (its
// process killed) is replaced.
func TestListenAPIStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listenAPI(path, newForwards(nil, netip.Addr{})); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("over a live socket: %v", err)
	}
	live.(*net.UnixListener).SetUnlinkOnClose(false)
	live.Close()
	a, err := listenAPI(path, newForwards(nil, netip.Addr{}))
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	a.close()
}
