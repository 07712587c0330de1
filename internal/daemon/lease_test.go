package daemon

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

func testServer(t *testing.T) *Server {
	t.Helper()
	store, err := netstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Server{
		store: store, reg: reg, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		members: map[string]*member{}, done: make(chan struct{}),
	}
}

// sessionPair is a connected pair of the daemon's kind of socket.
func sessionPair(t *testing.T) (client, server *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "session")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// leaseCount is the number of lease sessions, and whether the daemon
// would go idle.
func (s *Server) leaseCount() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases, s.idleNow()
}

// TestLeaseLastsAsLongAsTheSession: the address is held while the
// connection lasts and free as soon as it closes, which is all a
// supervisor killed with SIGKILL does.
func TestLeaseLastsAsLongAsTheSession(t *testing.T) {
	s := testServer(t)
	n, err := s.store.Create(netstore.CreateRequest{
		Name: "kmac", Driver: netstore.DriverMacvlan, Subnet: netip.MustParsePrefix("10.77.0.0/24"),
		Options: map[string]string{netstore.OptParent: "parent0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	client, server := sessionPair(t)
	done := make(chan struct{})
	want := netip.MustParseAddr("10.77.0.9")
	go func() {
		defer close(done)
		s.lease(server, wire.Lease{SandboxID: "k2", Network: "kmac", IP: want})
	}()
	var joined wire.Joined
	if _, err := wire.Recv(client, &joined); err != nil || joined.Error != "" || joined.IP != want || joined.Network.ID != n.ID {
		t.Fatalf("lease answer %+v, %v; want %v on %s", joined, err, want, n.ID)
	}
	if leases, _ := s.store.Leases(n.ID); leases["k2"] != want {
		t.Errorf("store leases %v while the session lasts; want k2 at %v", leases, want)
	}
	if _, err := s.store.AllocateLease(n.ID, "other", want); err == nil {
		t.Error("a held address was given to another sandbox")
	}
	if got, idle := s.leaseCount(); got != 1 || idle {
		t.Errorf("%d lease sessions, idle %v; want 1, not idle", got, idle)
	}
	client.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the lease session did not end with its connection")
	}
	if leases, _ := s.store.Leases(n.ID); len(leases) != 0 {
		t.Errorf("store leases %v after the session closed; want none", leases)
	}
	if got, idle := s.leaseCount(); got != 0 || !idle {
		t.Errorf("%d lease sessions, idle %v after close; want 0, idle", got, idle)
	}
}

func TestLeaseOnlyOnKernelMacvlan(t *testing.T) {
	s := testServer(t)
	if _, err := s.store.Create(netstore.CreateRequest{Name: "seg", Driver: "bridge", Subnet: netip.MustParsePrefix("10.88.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	client, server := sessionPair(t)
	go s.lease(server, wire.Lease{SandboxID: "m1", Network: "seg"})
	var joined wire.Joined
	if _, err := wire.Recv(client, &joined); err != nil || !strings.Contains(joined.Error, "join it instead") {
		t.Errorf("lease on a userspace segment: %+v, %v; want it refused", joined, err)
	}
	if got, _ := s.leaseCount(); got != 0 {
		t.Errorf("%d lease sessions after a refusal; want 0", got)
	}
}
