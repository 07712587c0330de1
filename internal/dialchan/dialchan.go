// Package dialchan is the loopback fast path's dialer: it connects TCP
// sockets inside a sandbox's network namespace through a dial channel to
// the sandbox's agent (the frames are internal/wire's), so that a host
// loopback client of a published port is relayed kernel socket to kernel
// socket and never crosses the gVisor stack or the TAP, as pasta splices
// its loopback clients. See docs/ARCHITECTURE.md, Data paths, and Measured
// facts: The loopback fast path's socket pool.
//
// One Dialer serves every owner of published ports: the supervisor of a
// private network (which opens the channel itself, lazily, and again when
// it ended), and the daemon of a shared network (which waits for the
// channel the member's supervisor promised, and takes a fresh one when the
// member rejoins after a daemon restart).
package dialchan

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/netns-run/netns-run/internal/wire"
)

// ErrNoChannel: there is no dial channel (none came, none will, or the
// sandbox it led into has ended). It is no refusal, so forward serves the
// client through the gVisor stack instead.
var ErrNoChannel = errors.New("no dial channel into the sandbox")

// ErrClosed: the Dialer was closed.
var ErrClosed = errors.New("the dialer of the sandbox is closed")

// Opener opens a new dial channel into the sandbox (sandbox.OpenDialChannel),
// for a Dialer that opens its own.
type Opener func() (*os.File, error)

// Dialer connects to a port inside a sandbox, at the first of its addresses
// that does not refuse: 127.0.0.1, then the member's own address, for a
// server bound only to it. It is a forward.LocalDialer and safe for
// concurrent use.
type Dialer struct {
	addrs []netip.Addr
	open  Opener

	mu      sync.Mutex
	ch      *channel
	pending chan struct{} // while a channel is expected; closed by Set
	closed  bool
}

// New makes a Dialer that tries addrs (1 to 4) in order. With open, it
// opens its channel at the first dial and again once that one has ended;
// without, it dials only through the channels it is given (Set).
func New(open Opener, addrs ...netip.Addr) (*Dialer, error) {
	if len(addrs) == 0 || len(addrs) > wire.MaxDialAddrs {
		return nil, errors.New("dialchan: want 1 to 4 addresses inside the sandbox")
	}
	return &Dialer{addrs: append([]netip.Addr(nil), addrs...), open: open}, nil
}

// Expect makes dials wait (each until its context ends) for the channel
// that is coming, until Set.
func (d *Dialer) Expect() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending == nil {
		d.pending = make(chan struct{})
	}
}

// Set makes the dial channel f (a duplicate is taken; f stays the
// caller's) the one to dial through, closing the one it replaces; with a
// nil f there is none (dials get ErrNoChannel). Either way the wait of
// Expect ends.
func (d *Dialer) Set(f *os.File) error {
	var ch *channel
	var err error
	if f != nil {
		ch, err = newChannel(f, d.addrs)
	}
	d.mu.Lock()
	old := d.ch
	d.ch = ch
	if d.closed {
		d.ch, old = nil, ch
	}
	if d.pending != nil {
		close(d.pending)
		d.pending = nil
	}
	d.mu.Unlock()
	if old != nil {
		old.close()
	}
	return err
}

// DialLocal connects to port inside the sandbox. A refusal is an error
// that errors.Is ECONNREFUSED; the connection is a kernel socket that
// forward/relay's event loop takes as it is (TakeFD), or a *net.TCPConn.
func (d *Dialer) DialLocal(ctx context.Context, port uint16) (net.Conn, error) {
	ch, err := d.channel(ctx)
	if err != nil {
		return nil, err
	}
	return ch.dialTCP(ctx, port)
}

// DialLocalNow is DialLocal for a caller that must not wait (an accept
// loop relaying its clients itself): it connects when that takes no wait,
// the common case of a loopback, and says false otherwise (no channel
// yet, an empty pool, a handshake not over at once, a refusal the agent
// must confirm); the caller then dials as usual (DialLocal).
func (d *Dialer) DialLocalNow(port uint16) (net.Conn, bool) {
	d.mu.Lock()
	ch := d.ch
	usable := ch != nil && d.pending == nil && !d.closed
	d.mu.Unlock()
	if !usable {
		return nil, false
	}
	select {
	case <-ch.done: // the agent went away: DialLocal replaces the channel
		return nil, false
	default:
	}
	return ch.dialNow(port)
}

// channel waits for an expected channel, drops one that has ended and
// opens a new one when the Dialer has an Opener.
func (d *Dialer) channel(ctx context.Context) (*channel, error) {
	d.mu.Lock()
	pending := d.pending
	d.mu.Unlock()
	if pending != nil {
		select {
		case <-pending:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if d.ch != nil {
		select {
		case <-d.ch.done: // the agent went away
			d.ch.close()
			d.ch = nil
		default:
			return d.ch, nil
		}
	}
	if d.open == nil {
		return nil, ErrNoChannel
	}
	f, err := d.open()
	if err != nil {
		return nil, errors.Join(ErrNoChannel, err)
	}
	defer f.Close()
	ch, err := newChannel(f, d.addrs)
	if err != nil {
		return nil, errors.Join(ErrNoChannel, err)
	}
	d.ch = ch
	return ch, nil
}

// Close ends the channel; dials waiting fail, and so do later ones
// (ErrClosed).
func (d *Dialer) Close() {
	d.mu.Lock()
	d.closed = true
	ch := d.ch
	d.ch = nil
	if d.pending != nil {
		close(d.pending)
		d.pending = nil
	}
	d.mu.Unlock()
	if ch != nil {
		ch.close()
	}
}
