package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/daemon"
	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/sandbox"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// Control sends req to the supervisor listening on socket.
func Control(socket string, req wire.ControlRequest) error {
	_, err := control1(socket, req)
	return err
}

// ChangePorts sends req, an AddPorts or RemovePorts, to the supervisor
// listening on socket and returns the sandbox's published ports after the
// change.
func ChangePorts(socket string, req wire.ControlRequest) ([]forward.Mapping, error) {
	rep, err := control1(socket, req)
	return rep.Ports, err
}

// control1 is one request and its reply.
func control1(socket string, req wire.ControlRequest) (wire.ControlReply, error) {
	c, err := wire.Dial(socket)
	if err != nil {
		return wire.ControlReply{}, fmt.Errorf("reach the sandbox's supervisor (is it running?): %w", err)
	}
	defer c.Close()
	var rep wire.ControlReply
	if err := wire.Exchange(c, req, &rep); err != nil {
		return rep, fmt.Errorf("the sandbox's supervisor: %w", err)
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

// PrivateStats asks the supervisor listening on socket for the counters
// of the private network it hosts.
func PrivateStats(socket string) (wire.MemberStats, error) {
	rep, err := control1(socket, wire.ControlRequest{Stats: &struct{}{}})
	if err == nil && rep.Stats == nil {
		err = errors.New("the sandbox's supervisor sent no counters")
	}
	if err != nil {
		return wire.MemberStats{}, err
	}
	return *rep.Stats, nil
}

// privateCounters reads, by run, the counters of the private network it
// hosts (private.go stores them once the gateway has its link).
var privateCounters sync.Map // *run -> func() wire.MemberStats

// attachment is a network joined with network connect.
type attachment struct {
	m  *membership
	fd int // this process's copy of the interface's descriptor
	ep registry.Endpoint
}

// control serves one sandbox's control socket.
type control struct {
	r  *run
	sb *sandbox.Sandbox

	mu       sync.Mutex
	attached []*attachment
	nextIf   int
}

// serveControl listens on the sandbox's control socket until ctx ends, then
// leaves every network joined through it. It returns the socket's path.
func (r *run) serveControl(ctx context.Context, sb *sandbox.Sandbox) (string, error) {
	path := filepath.Join(r.reg.Dir(), r.id+".ctl")
	ln, err := wire.Listen(path)
	if err != nil {
		return "", fmt.Errorf("control socket: %w", err)
	}
	c := &control{r: r, sb: sb, nextIf: 1}
	go func() {
		<-ctx.Done()
		ln.Close()
		os.Remove(path)
		c.leaveAll()
	}()
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go c.serve(conn)
		}
	}()
	return path, nil
}

func (c *control) serve(conn *net.UnixConn) {
	defer conn.Close()
	if wire.CheckPeer(conn) != nil {
		return // another user: not a word
	}
	var req wire.ControlRequest
	fds, err := wire.Recv(conn, &req)
	var bad *wire.DecodeError
	if err != nil && !errors.As(err, &bad) {
		return // the client is gone
	}
	if err == nil && req.Attach != nil {
		// The session has the connection until it ends.
		done, err := c.sb.Attach(conn, *req.Attach, fds)
		if err != nil {
			wire.Send(conn, wire.ControlReply{Error: err.Error()})
			return
		}
		<-done
		return
	}
	wire.CloseFDs(fds)
	rep := wire.ControlReply{}
	switch {
	case err != nil:
	case req.Resize != nil || req.Signal != nil:
		err = errors.New("resize and signal belong to an attach connection")
	case req.Connect != nil:
		err = c.connect(*req.Connect)
	case req.Disconnect != nil:
		err = c.disconnect(req.Disconnect.Network)
	case req.AddPorts != nil:
		rep.Ports, err = c.r.changePorts(req.AddPorts.Ports, nil)
	case req.RemovePorts != nil:
		rep.Ports, err = c.r.changePorts(nil, req.RemovePorts.Ports)
	case req.Stats != nil:
		rep.Stats, err = c.stats()
	}
	if err != nil {
		rep.Error = err.Error()
	}
	wire.Send(conn, rep)
}

// stats are the counters of the sandbox's private network.
func (c *control) stats() (*wire.MemberStats, error) {
	read, ok := privateCounters.Load(c.r)
	if !ok {
		return nil, errors.New("only a sandbox on --network private counts in its supervisor: ask the network daemon (netns-run stats)")
	}
	st := read.(func() wire.MemberStats)()
	st.Name, st.SandboxID = c.r.name, c.r.id
	return &st, nil
}

// connect joins the network through the daemon, makes the next ethN in
// the sandbox (no default route: that stays with eth0) and attaches it.
func (c *control) connect(req wire.ConnectRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.r
	join := wire.Join{SandboxID: r.id, Name: r.name, Network: req.Network, IP: req.IP, IP6: req.IP6, Aliases: req.Aliases, Secondary: true, DNS: dnsUpstreams(r.opts.DNS)}
	sess, err := daemon.JoinNetwork(r.rt, join)
	if err != nil {
		return err
	}
	j := sess.Joined
	name := fmt.Sprintf("eth%d", c.nextIf)
	cfg := tap.Config{
		Name: name, Mode: tap.ModeTAP, MTU: r.opts.MTU, MAC: j.MAC, PeerMAC: ipam.MAC(j.Network.Gateway).String(),
		Address: netip.PrefixFrom(j.IP, j.Network.Subnet.Bits()), Gateway: j.Network.Gateway, NoDefaultRoute: true,
	}
	if j.IP6.IsValid() {
		cfg.Address6 = netip.PrefixFrom(j.IP6, j.Network.Subnet6.Bits())
		cfg.Gateway6 = ipam.SLAAC(ipam.LinkLocalPrefix, ipam.MAC(j.Network.Gateway))
	} else {
		cfg.NoIPv6 = true
	}
	link, err := c.sb.AddLink(cfg)
	if err != nil {
		sess.Close()
		return err
	}
	if _, err := sess.Attach(link.FD); err != nil {
		sess.Close()
		unix.Close(link.FD)
		return err
	}
	c.nextIf++
	m := newMembership(sess)
	join.IP, join.IP6 = j.IP, j.IP6
	go r.keepMembership(m, join.Network, func() (*daemon.Session, error) { return r.rejoin(join, link.FD, c.sb) })
	a := &attachment{m: m, fd: link.FD, ep: registry.Endpoint{
		Network: j.Network.Name, NetworkID: j.Network.ID, Interface: name, IP: j.IP,
		Prefix: j.Network.Subnet.Bits(), Gateway: j.Network.Gateway, MAC: j.MAC, Aliases: req.Aliases,
	}}
	if j.IP6.IsValid() {
		a.ep.IP6, a.ep.Prefix6, a.ep.Gateway6 = j.IP6, j.Network.Subnet6.Bits(), j.Network.Gateway6
	}
	c.attached = append(c.attached, a)
	r.reg.Update(r.id, func(rec *registry.Record) { rec.Extra = append(rec.Extra, a.ep) })
	return nil
}

// disconnect leaves a network joined with connect. It returns once the
// interface is gone: it vanishes with its last descriptor, the daemon's.
func (c *control) disconnect(network string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.attached {
		if a.ep.Network != network && !(len(network) >= 12 && strings.HasPrefix(a.ep.NetworkID, network)) {
			continue
		}
		unix.Close(a.fd)
		a.m.leave()
		c.attached = append(c.attached[:i], c.attached[i+1:]...)
		c.r.reg.Update(c.r.id, func(rec *registry.Record) {
			kept := rec.Extra[:0]
			for _, ep := range rec.Extra {
				if ep.NetworkID != a.ep.NetworkID {
					kept = append(kept, ep)
				}
			}
			rec.Extra = kept
		})
		return nil
	}
	rec, _ := c.r.reg.Get(c.r.id)
	if rec.Network == network || rec.NetworkID == network {
		return fmt.Errorf("%s was started on network %s: only networks added with network connect can be disconnected", rec.Name, network)
	}
	return fmt.Errorf("sandbox %s is not connected to network %s", rec.Name, network)
}

func (c *control) leaveAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.attached {
		a.m.end()
		unix.Close(a.fd)
	}
	c.attached = nil
}
