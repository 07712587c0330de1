package runner

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/daemon"
	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/stack/resolver"
	"github.com/netns-run/netns-run/tap"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PrepareKernelMacvlan is network create's part for a macvlan network with
// a parent: it proves that this process may make macvlans on the parent,
// by making one and deleting it at once (only the kernel can tell), and
// sets the parent promiscuous when asked (-o promisc=on), as Docker applies
// a network's options when it is created. undo takes the promiscuous mode
// back, for a create that fails after.
func PrepareKernelMacvlan(parentName string, promisc bool) (undo func(), err error) {
	parent, err := netlink.LinkByName(parentName)
	if err != nil {
		return nil, fmt.Errorf("parent interface %s: %v", parentName, err)
	}
	probe := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("nrp%d", os.Getpid()%1000000000), ParentIndex: parent.Attrs().Index},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}
	if err := netlink.LinkAdd(probe); err != nil {
		return nil, privileged(fmt.Errorf("create a macvlan on %s: %w", parentName, err), parentName)
	}
	if err := netlink.LinkDel(probe); err != nil {
		return nil, fmt.Errorf("remove the trial macvlan %s: %w", probe.Name, err)
	}
	undo = func() {}
	if promisc && parent.Attrs().Promisc == 0 {
		if err := netlink.SetPromiscOn(parent); err != nil {
			return nil, privileged(fmt.Errorf("make %s promiscuous: %w", parentName, err), parentName)
		}
		undo = func() { netlink.SetPromiscOff(parent) }
	}
	return undo, nil
}

// ReleaseKernelMacvlan is network rm's part: the parent's promiscuous mode,
// which the network's create set, is taken back.
func ReleaseKernelMacvlan(n netstore.Network) error {
	if n.Options[netstore.OptPromisc] != "on" {
		return nil
	}
	parent, err := netlink.LinkByName(n.Options[netstore.OptParent])
	if err != nil {
		return fmt.Errorf("parent interface %s: %v", n.Options[netstore.OptParent], err)
	}
	if err := netlink.SetPromiscOff(parent); err != nil {
		return privileged(fmt.Errorf("turn promiscuous mode off on %s: %w", parent.Attrs().Name, err), parent.Attrs().Name)
	}
	return nil
}

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
	if err := r.createRecord(); err != nil {
		return wire.ExitOwnError, err
	}
	ip, ip6, err := r.holdLease(n)
	if err != nil {
		return wire.ExitOwnError, err
	}
	mac := ipam.MAC(ip)
	// On the parent's LAN the host's own resolvers serve, as Docker's
	// macvlan driver gives them; a loopback one would be the sandbox's.
	var nameservers []netip.Addr
	for _, up := range resolver.HostUpstreams() {
		if !up.Addr().IsLoopback() {
			nameservers = append(nameservers, up.Addr())
		}
	}
	p := placement{ip: ip, prefix: n.Subnet, gateway: n.Gateway, nameservers: nameservers, mac: mac, kernel: true, network: n.Name, networkID: n.ID}
	if ip6.IsValid() {
		// The parent's LAN has its own IPv6 router: the network's
		// gateway is the default route, as Docker's macvlan driver
		// sets it, and the address is the one IPAM handed out.
		p.ip6, p.gateway6, p.ipv6Gateway = netip.PrefixFrom(ip6, n.Subnet6.Bits()), n.Gateway6, n.Gateway6
	}
	sb, err := r.startSandbox(&p, nil)
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
		Address6: p.ip6, Gateway6: p.gateway6, NoIPv6: !p.ip6.IsValid(),
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
func (r *run) holdLease(n netstore.Network) (ip, ip6 netip.Addr, err error) {
	lease := wire.Lease{SandboxID: r.id, Network: n.ID, IP: r.opts.IP, IP6: r.opts.IP6}
	sess, err := daemon.HoldLease(r.rt, lease)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, err
	}
	r.undo.push(func() {
		if store, err := openStore(); err == nil {
			store.DropLease(n.ID, r.id)
		}
	})
	m := newMembership(sess)
	r.undo.push(m.end) // first: no rejoin re-takes the lease after the drop
	lease.IP, lease.IP6 = sess.Joined.IP, sess.Joined.IP6
	go r.keepMembership(m, n.Name, func() (*daemon.Session, error) { return daemon.HoldLease(r.rt, lease) })
	return lease.IP, lease.IP6, nil
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
