package runner

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/daemon"
	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelMacvlan puts the sandbox on a real macvlan sub-interface of the
// network's parent, as Docker's macvlan driver: no userspace stack at all.
// It needs CAP_NET_ADMIN over the parent, so it is for privileged users.
func (r *run) kernelMacvlan(n netstore.Network) (int, error) {
	if len(r.opts.Publish) > 0 || r.opts.HostLoopback {
		return wire.ExitOwnError, errors.New("a kernel macvlan network has no userspace gateway: -p and --host-loopback do not apply (members are reachable on the parent's LAN)")
	}
	parentName := n.Options[netstore.OptParent]
	parent, err := netlink.LinkByName(parentName)
	if err != nil {
		return wire.ExitOwnError, fmt.Errorf("network %s: parent interface %s: %v", n.Name, parentName, err)
	}
	if n.Options[netstore.OptPromisc] == "on" {
		if err := netlink.SetPromiscOn(parent); err != nil {
			return wire.ExitOwnError, privileged(fmt.Errorf("make %s promiscuous: %w", parentName, err), parentName)
		}
	}
	ip, err := r.holdLease(n)
	if err != nil {
		return wire.ExitOwnError, err
	}
	mac := ipam.MAC(ip)
	// On the parent's LAN the host's own resolvers serve, as Docker's
	// macvlan driver gives them; a loopback one would be the sandbox's.
	var nameservers []netip.Addr
	for _, up := range HostUpstreams() {
		if !up.Addr().IsLoopback() {
			nameservers = append(nameservers, up.Addr())
		}
	}
	p := placement{ip: ip, prefix: n.Subnet, gateway: n.Gateway, nameservers: nameservers, mac: mac, kernel: true}
	r.reg.Update(r.id, func(rec *registry.Record) { rec.Network, rec.NetworkID = n.Name, n.ID })
	sb, err := r.startSandbox(p, nil)
	if err != nil {
		return statusOf(err), err
	}
	tmp := "nrm" + r.id[:10]
	mode := netlink.MACVLAN_MODE_BRIDGE
	if n.Options[netstore.OptMacvlanMode] == "private" {
		mode = netlink.MACVLAN_MODE_PRIVATE
	}
	mtu := parent.Attrs().MTU
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: tmp, ParentIndex: parent.Attrs().Index, MTU: mtu, HardwareAddr: mac}, Mode: mode}
	if err := netlink.LinkAdd(mv); err != nil {
		return wire.ExitOwnError, privileged(fmt.Errorf("create a macvlan on %s: %w", parentName, err), parentName)
	}
	// Once moved, the macvlan is the sandbox's: it goes with its namespace
	// (and its index here may name another link by then).
	moved := false
	r.undo.push(func() {
		if !moved {
			netlink.LinkDel(mv)
		}
	})
	if err := netlink.LinkSetNsPid(mv, sb.Pid()); err != nil {
		return wire.ExitOwnError, privileged(fmt.Errorf("move the macvlan into the sandbox: %w", err), parentName)
	}
	moved = true
	_, err = sb.AddLink(tap.Config{
		Name: "eth0", Mode: tap.ModeAdopt, Adopt: tmp, MTU: mtu, MAC: mac.String(),
		Address: netip.PrefixFrom(ip, n.Subnet.Bits()), Gateway: n.Gateway,
	})
	if err != nil {
		return wire.ExitOwnError, err
	}
	return r.runAndWait(sb, p, []forward.Mapping{}, nil)
}

// holdLease takes the sandbox's address on n in a lease session with the
// daemon, which gives it back as soon as the session closes, however this
// process ends (a SIGKILL included), and re-takes it from the next daemon
// if this one dies. A normal end drops it here at once, without waiting
// for the daemon to see the session close.
func (r *run) holdLease(n netstore.Network) (netip.Addr, error) {
	lease := wire.Lease{SandboxID: r.id, Network: n.ID, IP: r.opts.IP}
	sess, err := daemon.HoldLease(r.rt, lease)
	if err != nil {
		return netip.Addr{}, err
	}
	r.undo.push(func() {
		if store, err := openStore(); err == nil {
			store.DropLease(n.ID, r.id)
		}
	})
	m := newMembership(sess)
	r.undo.push(m.end) // first: no rejoin re-takes the lease after the drop
	lease.IP = sess.Joined.IP
	go r.keepMembership(m, n.Name, func() (*daemon.Session, error) { return daemon.HoldLease(r.rt, lease) })
	return lease.IP, nil
}

// privileged adds what to do to a permission error.
func privileged(err error, parent string) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%v: a macvlan on %s needs CAP_NET_ADMIN over it (run as root), or drop -o parent to use the userspace macvlan network", err, parent)
	}
	return err
}

func openStore() (*netstore.Store, error) {
	dir, err := netstore.DefaultDir()
	if err != nil {
		return nil, err
	}
	return netstore.Open(dir)
}
