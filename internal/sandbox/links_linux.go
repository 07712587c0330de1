package sandbox

import (
	"errors"
	"fmt"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// linkTimeout bounds how long the agent may take to make an interface.
const linkTimeout = 10 * time.Second

type linkResult struct {
	link tap.Link
	err  error
}

// AddLink makes another interface in the running sandbox (netns-run
// network connect) and returns its frame descriptor, which the caller owns.
func (sb *Sandbox) AddLink(cfg tap.Config) (tap.Link, error) {
	sb.linkCall.Lock()
	defer sb.linkCall.Unlock()
	reply := make(chan linkResult, 1)
	sb.mu.Lock()
	if !sb.running {
		// Before Run nobody else reads the socket: ask and read here.
		sb.mu.Unlock()
		return sb.addLinkBeforeRun(cfg)
	}
	if sb.ended {
		sb.mu.Unlock()
		return tap.Link{}, ErrNotRunning
	}
	sb.linkReply = reply
	sb.mu.Unlock()
	defer func() {
		sb.mu.Lock()
		sb.linkReply = nil
		sb.mu.Unlock()
	}()
	if err := wire.Send(sb.conn, wire.AgentMessage{AddLink: &cfg}); err != nil {
		return tap.Link{}, err
	}
	select {
	case r := <-reply:
		return r.link, r.err
	case <-sb.readerDone:
		return tap.Link{}, ErrNotRunning
	case <-time.After(linkTimeout):
		return tap.Link{}, errors.New("the sandbox agent did not make the interface in time")
	}
}

func (sb *Sandbox) addLinkBeforeRun(cfg tap.Config) (tap.Link, error) {
	if err := wire.Send(sb.conn, wire.AgentMessage{AddLink: &cfg}); err != nil {
		return tap.Link{}, err
	}
	m, fds, err := wire.RecvAgent(sb.conn)
	if err != nil {
		wire.CloseFDs(fds)
		return tap.Link{}, fmt.Errorf("sandbox agent: %w", err)
	}
	if m.LinkAdded == nil {
		wire.CloseFDs(fds)
		return tap.Link{}, errors.New("sandbox agent: unexpected answer to AddLink")
	}
	reply := make(chan linkResult, 1)
	sb.mu.Lock()
	sb.linkReply = reply
	sb.mu.Unlock()
	sb.linkAdded(*m.LinkAdded, fds)
	sb.mu.Lock()
	sb.linkReply = nil
	sb.mu.Unlock()
	r := <-reply
	return r.link, r.err
}

// linkAdded hands the agent's answer to the waiting AddLink (the reader
// goroutine calls it).
func (sb *Sandbox) linkAdded(m wire.LinkAdded, fds []int) {
	r := linkResult{err: errors.New(m.Error)}
	if m.Error == "" {
		switch {
		case m.Mode == tap.ModeAdopt && len(fds) == 0:
			r = linkResult{link: tap.Link{FD: -1, Mode: m.Mode}}
		case len(fds) == 1:
			r = linkResult{link: tap.Link{FD: fds[0], Mode: m.Mode}}
			fds = nil
		default:
			r.err = errors.New("the sandbox agent sent no descriptor with the interface")
		}
	}
	wire.CloseFDs(fds)
	sb.mu.Lock()
	reply := sb.linkReply
	sb.mu.Unlock()
	if reply == nil {
		if r.link.FD > 0 {
			unix.Close(r.link.FD)
		}
		return
	}
	reply <- r
}
