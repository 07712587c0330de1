package runner

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/daemon"
	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/sandbox"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// rejoinAttempts bounds how often a member re-attaches to a daemon that died.
const rejoinAttempts = 5

// shared makes the sandbox a member of a network hosted by the daemon.
func (r *run) shared() (int, error) {
	opts := r.opts
	if opts.LinkMode == tap.ModePacket {
		return wire.ExitOwnError, fmt.Errorf("--link-mode packet works only with --network private: shared networks switch TAP frames")
	}
	join := wire.Join{
		SandboxID: r.id, Name: r.name, Network: opts.Network, IP: opts.IP, IP6: opts.IP6, MAC: opts.MAC,
		Aliases: opts.Aliases, Links: opts.Links, Ports: opts.Publish, HostLoopback: opts.HostLoopback,
		FastPath: r.fastPath, DNS: dnsUpstreams(opts.DNS),
	}
	// The agent starts while the daemon places the sandbox (and while
	// the daemon starts, on the first run): the spec waits for the
	// address, the agent's start for nothing. Not in a goroutine beside
	// the agent's clone: every page it touched then would be copied.
	reaching := daemon.Reach(r.rt)
	defer reaching.Close()
	var sess *daemon.Session
	var p placement
	sb, err := r.startSandbox(&p, func(p *placement) error {
		var err error
		if sess, err = reaching.JoinNetwork(join); err != nil {
			return err
		}
		r.undo.push(sess.Close)
		*p, err = r.sharedPlacement(sess.Joined)
		return err
	})
	if err != nil {
		if strings.Contains(err.Error(), "/dev/net/tun") {
			err = fmt.Errorf("%v (shared networks need a TAP: without /dev/net/tun use --network private)", err)
		}
		return statusOf(err), err
	}
	j := sess.Joined
	link := sb.Link()
	// This process keeps its own copy of eth0's descriptor: the TAP then
	// outlives a daemon crash and can be handed to the next daemon.
	r.undo.push(func() { unix.Close(link.FD) })
	if _, err := sess.Attach(link.FD); err != nil {
		return wire.ExitOwnError, err
	}
	r.reportAuto(j.Ports)
	join.IP, join.IP6 = j.IP, j.IP6
	r.published = &publishedPorts{ports: j.Ports}
	m := newMembership(sess)
	r.undo.push(m.end)
	return r.runAndWait(sb, p, j.Ports, func() {
		// The agent serves a dial channel once the command runs. It is
		// sent before keepMembership reads the session (Wait), and before
		// Ready, so that a detached run's ports take the fast path as soon
		// as the run returns.
		if join.FastPath {
			r.sendDialChannel(sb, sess)
		}
		go r.keepMembership(m, join.Network, func() (*daemon.Session, error) {
			// The ports as they are now: port add/rm may have changed
			// them; a change waits until the rejoin is done.
			r.published.mu.Lock()
			defer r.published.mu.Unlock()
			join.Ports = r.published.ports
			return r.rejoin(join, link.FD, sb)
		})
	})
}

// sharedPlacement is where the daemon placed the sandbox.
func (r *run) sharedPlacement(j wire.Joined) (placement, error) {
	mac, err := net.ParseMAC(j.MAC)
	if err != nil {
		return placement{}, fmt.Errorf("network daemon gave a bad MAC %q", j.MAC)
	}
	p := placement{
		ip: j.IP, prefix: j.Network.Subnet, gateway: j.Network.Gateway, nameservers: []netip.Addr{j.Network.Gateway},
		mac: mac, gwMAC: ipam.MAC(j.Network.Gateway), extra: j.LinkHosts,
		linkMode:    tap.ModeTAP, // the switch needs plain frames: a TAP, not the packet link
		memberNames: !j.Network.BuiltIn(),
		network:     j.Network.Name, networkID: j.Network.ID,
	}
	if j.IP6.IsValid() {
		// Set before the command starts and without DAD: the gateway
		// handed it out and knows every address on the segment.
		p.ip6 = netip.PrefixFrom(j.IP6, j.Network.Subnet6.Bits())
		p.gateway6 = ipam.SLAAC(ipam.LinkLocalPrefix, p.gwMAC)
		p.ipv6Gateway = j.Network.Gateway6
	}
	if j.Network.BuiltIn() {
		// Docker sets link variables on the default bridge only.
		p.linkEnv = linkEnv(r.reg, r.opts.Links, r.name)
	}
	return p, nil
}

// publishedPorts are the ports of a sandbox on its first shared network.
// Its supervisor owns them: port add/rm come here over the control socket
// (changePorts), and a rejoin after a daemon restart publishes them as
// they are now.
type publishedPorts struct {
	mu    sync.Mutex // held across a change, and across a rejoin
	ports []forward.Mapping
}

// changePorts publishes more ports of the running sandbox, or withdraws
// some, through the daemon, and records them; it returns the ports after
// the change.
func (r *run) changePorts(add, remove []forward.Mapping) ([]forward.Mapping, error) {
	if r.published == nil {
		return nil, fmt.Errorf("sandbox %s is not on a shared network (it runs on %s): ports can change at run time only on shared networks (--network bridge or your own)", r.name, r.opts.Network)
	}
	r.published.mu.Lock()
	defer r.published.mu.Unlock()
	rep, err := daemon.ChangePorts(r.rt, wire.Request{SandboxID: r.id, AddPorts: add, RemovePorts: remove})
	if err != nil {
		return nil, err
	}
	r.published.ports = rep.Ports
	if err := r.reg.Update(r.id, func(rec *registry.Record) { rec.Ports = rep.Ports }); err != nil {
		return nil, fmt.Errorf("record the ports: %w", err)
	}
	return rep.Ports, nil
}

// sendDialChannel hands the daemon a new dial channel into the sandbox,
// through which it serves the host's loopback clients of the published TCP
// ports (the loopback fast path), as Join.FastPath promised; when none can
// be opened it says so, and they take the gVisor path.
func (r *run) sendDialChannel(sb *sandbox.Sandbox, sess *daemon.Session) {
	f, err := sb.OpenDialChannel()
	switch {
	case err == nil:
		defer f.Close()
	case !errors.Is(err, sandbox.ErrNotRunning): // else the command has ended: nothing to serve
		r.log.Warn("no loopback fast path for the published ports", "err", err)
	}
	if err := sess.SendDialChannel(f); err != nil {
		r.log.Warn("no loopback fast path for the published ports", "err", err)
	}
}

// keepMembership opens the session again with again when the daemon ends
// it while the sandbox runs (it was killed or crashed), keeping address
// and ports.
func (r *run) keepMembership(m *membership, network string, again func() (*daemon.Session, error)) {
	defer close(m.kept)
	for {
		if !m.wait() {
			return
		}
		r.log.Warn("the network daemon went away; joining again", "network", network)
		var err error
		for i := 0; i < rejoinAttempts; i++ {
			var sess *daemon.Session
			if sess, err = again(); err == nil {
				if !m.replace(sess) {
					return
				}
				break
			}
			time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
		}
		if err != nil {
			r.log.Error("cannot rejoin the network; the sandbox is cut off", "err", err)
			return
		}
	}
}

// rejoin joins and attaches again, and sends the new daemon a fresh dial
// channel when the first join promised one (the last one closed with the
// daemon it went to).
func (r *run) rejoin(join wire.Join, fd int, sb *sandbox.Sandbox) (*daemon.Session, error) {
	sess, err := daemon.JoinNetwork(r.rt, join)
	if err != nil {
		return nil, err
	}
	if _, err := sess.Attach(fd); err != nil {
		sess.Close()
		return nil, err
	}
	if join.FastPath {
		r.sendDialChannel(sb, sess)
	}
	return sess, nil
}

// membership is the current session of a member, replaced on rejoin.
type membership struct {
	kept  chan struct{} // closed when keepMembership returns
	mu    sync.Mutex
	sess  *daemon.Session
	ended bool
}

func newMembership(sess *daemon.Session) *membership {
	return &membership{sess: sess, kept: make(chan struct{})}
}

// wait blocks until the session ends and reports whether that was the
// daemon's doing (not end).
func (m *membership) wait() bool {
	m.mu.Lock()
	sess := m.sess
	m.mu.Unlock()
	sess.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.ended
}

// replace installs a new session, or closes it when the run has ended.
func (m *membership) replace(sess *daemon.Session) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		sess.Close()
		return false
	}
	m.sess = sess
	return true
}

// end leaves the network for good.
func (m *membership) end() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ended = true
	m.sess.Close()
}

// leaveTimeout bounds how long leave waits for the daemon.
const leaveTimeout = 5 * time.Second

// leave is end, once the daemon has released the member: when it
// returns, the member's interface is gone from the sandbox (the daemon's
// was the last descriptor holding it), as after docker network
// disconnect. keepMembership must be running.
func (m *membership) leave() {
	m.mu.Lock()
	m.ended = true
	m.sess.Leave()
	m.mu.Unlock()
	select {
	case <-m.kept:
	case <-time.After(leaveTimeout):
	}
	m.end()
}

// dnsUpstreams are run --dns's addresses as a resolver's upstreams.
func dnsUpstreams(dns []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range dns {
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out
}
