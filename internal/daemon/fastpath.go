package daemon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/netns-run/netns-run/internal/sandbox"
)

// errNoDialChannel: no dial channel has come (yet). It is no refusal, so
// forward serves the client through the gVisor stack instead.
var errNoDialChannel = errors.New("no dial channel into the sandbox")

// fastPath is a member's loopback fast path, a forward.LocalDialer: the
// host's loopback clients of its published TCP ports are served by sockets
// connected inside its sandbox, over the dial channel its supervisor sent.
// While one is expected (Join.FastPath: it comes once the command runs)
// they wait for it. Without one (the fast path is off, or the sandbox
// could not open one), and once the sandbox has ended, DialLocal fails
// and they take the gVisor path.
type fastPath struct {
	mu      sync.Mutex
	d       *sandbox.InsideDialer
	pending chan struct{} // while a dial channel is expected; closed by set
}

// expect makes loopback clients wait for a dial channel, until set.
func (p *fastPath) expect() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = make(chan struct{})
}

// newInsideDialer serves dials over the dial channel fd, which it closes
// (the dialer keeps a duplicate): to the sandbox's 127.0.0.1 first, then
// to the member's own address, for a server bound only to it.
func newInsideDialer(fd int, member netip.Addr) (*sandbox.InsideDialer, error) {
	f := os.NewFile(uintptr(fd), "dial-channel")
	defer f.Close()
	return sandbox.NewInsideDialer(f, netip.MustParseAddr("127.0.0.1"), member)
}

// DialLocal connects to port inside the member's sandbox.
func (p *fastPath) DialLocal(ctx context.Context, port uint16) (net.Conn, error) {
	p.mu.Lock()
	pending := p.pending
	p.mu.Unlock()
	if pending != nil {
		select {
		case <-pending:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p.mu.Lock()
	d := p.d
	p.mu.Unlock()
	if d == nil {
		return nil, errNoDialChannel
	}
	return d.DialTCP(ctx, port)
}

// set makes d the dialer (nil: none), closing the one it replaces, and
// ends the wait for one. A dial still waiting on the old one fails and
// falls back to the gVisor path.
func (p *fastPath) set(d *sandbox.InsideDialer) {
	p.mu.Lock()
	old := p.d
	p.d = d
	if p.pending != nil {
		close(p.pending)
		p.pending = nil
	}
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
}
