// Package netstore keeps the user's network definitions (the built-in
// "bridge" and every `network create`d one) and the address leases of their
// members in the user's data directory, so that a restarted daemon knows its
// networks and never hands an address out twice.
//
// Everything lives in one directory:
//
//	networks.json  the network definitions, the built-in bridge included
//	leases.json    network id -> sandbox id -> address, IPv4 and IPv6 apart
//	lock           flock'd for the length of every operation
//
// Files are written atomically (temporary file, fsync, rename) with mode
// 0600. Every operation takes an exclusive flock on the lock file and reads
// the files afresh, so several processes (CLI invocations, the daemon) can
// share a directory: two concurrent creates never corrupt the files nor get
// the same subnet.
package netstore

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/kinderr"
)

// Drivers.
const (
	DriverBridge  = "bridge"
	DriverMacvlan = "macvlan"
)

// BridgeName is the name of the built-in default network.
const BridgeName = "bridge"

// The built-in bridge network's addressing (Docker's; see README.md, Usage).
var (
	bridgeSubnet  = netip.MustParsePrefix("172.17.0.0/16")
	bridgeGateway = netip.MustParseAddr("172.17.0.1")
)

// Sentinel errors, for errors.Is. Every error the package returns for a
// caller's mistake has a one-line message for people and wraps one of these.
var (
	ErrNotFound  = errors.New("network not found")
	ErrAmbiguous = errors.New("ambiguous network id prefix")
	ErrExists    = errors.New("network name already exists")
	ErrOverlap   = errors.New("subnet overlaps another network")
	ErrNoSubnet  = errors.New("no free subnet in the default pools")
	ErrBuiltin   = errors.New("built-in network")
	ErrInvalid   = errors.New("invalid network definition")
)

// errorf is the package's error: a message for people that wraps one of
// the sentinels above, for errors.Is.
func errorf(kind error, format string, args ...any) error {
	return kinderr.New(kind, format, args...)
}

// notFound is the error for a name or id that matches no network.
func notFound(ref string) error {
	return errorf(ErrNotFound, "network %q not found: see netns-run network ls", ref)
}

// Network is one network definition. It is also sent to the daemon, hence
// the tags; networks.json has its own type (diskNetwork) with the same names.
type Network struct {
	ID       string            `json:"id"` // 64 hex digits, like Docker
	Name     string            `json:"name"`
	Driver   string            `json:"driver"` // DriverBridge or DriverMacvlan
	Subnet   netip.Prefix      `json:"subnet"`
	Gateway  netip.Addr        `json:"gateway"`
	IPRange  netip.Prefix      `json:"ip_range,omitzero"`  // zero = whole subnet
	Internal bool              `json:"internal,omitempty"` // no outbound NAT
	Options  map[string]string `json:"options,omitempty"`  // -o key=value: macvlan_mode=bridge|private, parent=IFACE, promisc=on|off
	Created  time.Time         `json:"created"`
	// EnableIPv6 makes the network dual stack (--ipv6): Subnet6 and
	// Gateway6 are its IPv6 side, zero without it.
	EnableIPv6 bool         `json:"enable_ipv6,omitempty"`
	Subnet6    netip.Prefix `json:"subnet6,omitzero"`
	Gateway6   netip.Addr   `json:"gateway6,omitzero"`
}

// BuiltIn reports whether n is the built-in bridge network.
func (n Network) BuiltIn() bool { return n.Name == BridgeName }

// ShortID is the first 12 hex digits of the id, as `network ls` shows it.
func (n Network) ShortID() string {
	if len(n.ID) > 12 {
		return n.ID[:12]
	}
	return n.ID
}

// Pool returns a fresh address pool for the network (nothing held).
func (n Network) Pool() (*ipam.Pool, error) {
	return ipam.NewPool(n.Subnet, n.IPRange, n.Gateway)
}

// Pool6 returns a fresh IPv6 address pool for a dual-stack network.
func (n Network) Pool6() (*ipam.Pool6, error) {
	if !n.EnableIPv6 {
		return nil, errorf(ErrInvalid, "network %s has no IPv6: create one with --ipv6", n.Name)
	}
	return ipam.NewPool6(n.Subnet6, n.Gateway6)
}

// CreateRequest is what `network create` asks for. Zero fields take the
// defaults: driver bridge, the next free subnet of the default pools, the
// subnet's first address as gateway, the whole subnet as ip-range.
type CreateRequest struct {
	Name, Driver string
	Subnet       netip.Prefix
	IPRange      netip.Prefix
	Gateway      netip.Addr
	Internal     bool
	Options      map[string]string
	// IPv6 asks for a dual-stack network; Subnet6 (zero: a ULA /64 is
	// picked) and Gateway6 (zero: the subnet's ::1) are its IPv6 side.
	IPv6     bool
	Subnet6  netip.Prefix
	Gateway6 netip.Addr
}

// Store is the network store in one directory. It is safe for concurrent
// use, also by several processes sharing the directory.
type Store struct {
	dir string
	mu  sync.Mutex // serialises this Store's operations; the flock does the rest
}

// DefaultDir returns the directory the store lives in by default:
// $XDG_DATA_HOME/netns-run, else ~/.local/share/netns-run.
func DefaultDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "netns-run"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the data directory: %w: set XDG_DATA_HOME or HOME", err)
	}
	return filepath.Join(home, ".local", "share", "netns-run"), nil
}

// Open opens (creating it, mode 0700, if needed) the store in dir and makes
// sure the built-in bridge network exists. The bridge's id is random, chosen
// on the first Open of the directory and stable afterwards.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("opening the network store: no directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the network store: %w", err)
	}
	s := &Store{dir: dir}
	if err := s.update(func(*state) error { return nil }); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Check validates what of req does not depend on the other networks, so
// that a caller can refuse a bad request before acting on it (the kernel
// macvlan's parent is prepared before Create).
func (req CreateRequest) Check() error {
	_, err := normalise(req)
	return err
}

// Create validates req and stores the new network. On error nothing changes.
func (s *Store) Create(req CreateRequest) (Network, error) {
	n, err := normalise(req)
	if err != nil {
		return Network{}, err
	}
	err = s.update(func(st *state) error {
		for _, o := range st.networks {
			if o.Name == n.Name {
				return errorf(ErrExists, "network with name %s already exists", n.Name)
			}
		}
		if !n.Subnet.IsValid() {
			sub, ok := st.freeSubnet()
			if !ok {
				return errorf(ErrNoSubnet, "no free subnet left in the default pools (172.17.0.0/16-172.31.0.0/16, 192.168.0.0/16 in /20s): pass --subnet or remove a network")
			}
			n.Subnet = sub
			n.Gateway = firstAddr(sub)
		} else if o, ok := st.overlapping(n.Subnet); ok {
			return errorf(ErrOverlap, "subnet %s overlaps network %s (%s): pick another --subnet", n.Subnet, o.Name, o.Subnet)
		}
		if _, err := n.Pool(); err != nil {
			return err
		}
		id, err := st.newID()
		if err != nil {
			return err
		}
		n.ID = id
		if n.EnableIPv6 {
			if !n.Subnet6.IsValid() {
				sub, ok := st.freeSubnet6(id)
				if !ok {
					return errorf(ErrNoSubnet, "no free IPv6 /64 left in %s/48: pass --subnet with an IPv6 subnet", sub)
				}
				n.Subnet6, n.Gateway6 = sub, firstAddr(sub)
			} else if o, ok := st.overlapping(n.Subnet6); ok {
				return errorf(ErrOverlap, "IPv6 subnet %s overlaps network %s (%s): pick another --subnet", n.Subnet6, o.Name, o.Subnet6)
			}
		}
		n.Created = time.Now().UTC()
		st.networks = append(st.networks, n)
		st.networksDirty = true
		return nil
	})
	if err != nil {
		return Network{}, err
	}
	return n, nil
}

// List returns every network: the built-in bridge first, then by name.
func (s *Store) List() ([]Network, error) {
	var out []Network
	err := s.update(func(st *state) error {
		out = slices.Clone(st.networks)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortNetworks(out)
	return out, nil
}

// Get finds a network by exact id, then exact name, then unique id prefix
// (as Docker does). A miss is an error wrapping ErrNotFound: `network "x" not
// found: see netns-run network ls`; a prefix matching several ids wraps
// ErrAmbiguous.
func (s *Store) Get(nameOrID string) (Network, error) {
	var n Network
	err := s.update(func(st *state) error {
		i, err := st.find(nameOrID)
		if err != nil {
			return err
		}
		n = st.networks[i]
		return nil
	})
	return n, err
}

// Remove deletes a network and its leases. The built-in bridge cannot be
// removed (ErrBuiltin). check, when not nil, is called with the network
// while the store is locked and before anything changes; an error from it
// (say, "network has active sandboxes") is returned as is and nothing is
// removed. check must not call back into the Store.
func (s *Store) Remove(nameOrID string, check func(Network) error) error {
	return s.update(func(st *state) error {
		i, err := st.find(nameOrID)
		if err != nil {
			return err
		}
		n := st.networks[i]
		if n.BuiltIn() {
			return errorf(ErrBuiltin, "%s is a pre-defined network and cannot be removed", n.Name)
		}
		if check != nil {
			if err := check(n); err != nil {
				return err
			}
		}
		st.networks = slices.Delete(st.networks, i, i+1)
		st.networksDirty = true
		for _, l := range []map[string]map[string]netip.Addr{st.leases, st.leases6} {
			if _, ok := l[n.ID]; ok {
				delete(l, n.ID)
				st.leasesDirty = true
			}
		}
		return nil
	})
}

// Leases returns the leases of a network (name or id, as Get): sandbox id ->
// address. The map is the caller's.
func (s *Store) Leases(networkID string) (map[string]netip.Addr, error) {
	var out map[string]netip.Addr
	err := s.update(func(st *state) error {
		i, err := st.find(networkID)
		if err != nil {
			return err
		}
		out = maps.Clone(st.leases[st.networks[i].ID])
		if out == nil {
			out = map[string]netip.Addr{}
		}
		return nil
	})
	return out, err
}

// Leases6 returns the IPv6 leases of a network, as Leases the IPv4 ones.
func (s *Store) Leases6(networkID string) (map[string]netip.Addr, error) {
	var out map[string]netip.Addr
	err := s.update(func(st *state) error {
		i, err := st.find(networkID)
		if err != nil {
			return err
		}
		out = maps.Clone(st.leases6[st.networks[i].ID])
		if out == nil {
			out = map[string]netip.Addr{}
		}
		return nil
	})
	return out, err
}

// AllocateLease leases an address to sandboxID on the network and returns
// it, in one locked step, so that no other process can take the same
// address in between. With want valid it leases want (a static --ip),
// which must be usable on the network (inside the subnet, not its gateway,
// network or broadcast address) and not leased to another sandbox (an error
// wrapping ipam.ErrInUse); otherwise it keeps the sandbox's current lease if
// it has one, else takes the lowest free address of the ip-range. Either
// way the sandbox's previous lease on the network is replaced.
func (s *Store) AllocateLease(networkID, sandboxID string, want netip.Addr) (netip.Addr, error) {
	if sandboxID == "" {
		return netip.Addr{}, errorf(ErrInvalid, "allocating an address: no sandbox id given")
	}
	var got netip.Addr
	err := s.update(func(st *state) error {
		n, pool, err := st.poolWithout(networkID, sandboxID)
		if err != nil {
			return err
		}
		cur, has := st.leases[n.ID][sandboxID]
		switch {
		case want.IsValid():
			if err := pool.Reserve(want); err != nil {
				return err
			}
			got = want.Unmap()
		case has && pool.Reserve(cur) == nil:
			got = cur
		default:
			if got, err = pool.Allocate(); err != nil {
				return err
			}
		}
		st.setLease(n.ID, sandboxID, got)
		return nil
	})
	if err != nil {
		return netip.Addr{}, err
	}
	return got, nil
}

// AllocateLease6 leases an IPv6 address to sandboxID on a dual-stack
// network, as AllocateLease an IPv4 one: want (a static --ip6) when valid,
// else the sandbox's current IPv6 lease, else the lowest free address
// from the subnet's ::2 on.
func (s *Store) AllocateLease6(networkID, sandboxID string, want netip.Addr) (netip.Addr, error) {
	if sandboxID == "" {
		return netip.Addr{}, errorf(ErrInvalid, "allocating an address: no sandbox id given")
	}
	var got netip.Addr
	err := s.update(func(st *state) error {
		i, err := st.find(networkID)
		if err != nil {
			return err
		}
		n := st.networks[i]
		pool, err := n.Pool6()
		if err != nil {
			return err
		}
		for sb, ip := range st.leases6[n.ID] {
			if sb != sandboxID {
				_ = pool.Reserve(ip) // a lease the network no longer fits is simply not held
			}
		}
		cur, has := st.leases6[n.ID][sandboxID]
		switch {
		case want.IsValid():
			if err := pool.Reserve(want); err != nil {
				return err
			}
			got = want
		case has && pool.Reserve(cur) == nil:
			got = cur
		default:
			if got, err = pool.Allocate(); err != nil {
				return err
			}
		}
		st.setLeaseIn(st.leases6, n.ID, sandboxID, got)
		return nil
	})
	if err != nil {
		return netip.Addr{}, err
	}
	return got, nil
}

// DropLease forgets sandboxID's leases on the network, IPv4 and IPv6.
// Dropping a lease that does not exist, or on a network that no longer
// exists, is not an error.
func (s *Store) DropLease(networkID, sandboxID string) error {
	return s.update(func(st *state) error {
		i, err := st.find(networkID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		id := st.networks[i].ID
		for _, l := range []map[string]map[string]netip.Addr{st.leases, st.leases6} {
			if _, ok := l[id][sandboxID]; !ok {
				continue
			}
			delete(l[id], sandboxID)
			if len(l[id]) == 0 {
				delete(l, id)
			}
			st.leasesDirty = true
		}
		return nil
	})
}

// state is the store's content during one locked operation.
type state struct {
	networks      []Network
	leases        map[string]map[string]netip.Addr
	leases6       map[string]map[string]netip.Addr
	networksDirty bool
	leasesDirty   bool
}

// find resolves a name or id: exact id, exact name, unique id prefix.
func (st *state) find(ref string) (int, error) {
	if ref == "" {
		return 0, notFound(ref)
	}
	for i, n := range st.networks {
		if n.ID == ref {
			return i, nil
		}
	}
	for i, n := range st.networks {
		if n.Name == ref {
			return i, nil
		}
	}
	match, count := -1, 0
	for i, n := range st.networks {
		if strings.HasPrefix(n.ID, ref) {
			match = i
			count++
		}
	}
	switch count {
	case 0:
		return 0, notFound(ref)
	case 1:
		return match, nil
	default:
		return 0, errorf(ErrAmbiguous, "network id prefix %q matches %d networks: give more digits or the name", ref, count)
	}
}

// poolWithout returns the network ref names and its pool holding every
// lease but sandboxID's own.
func (st *state) poolWithout(ref, sandboxID string) (Network, *ipam.Pool, error) {
	i, err := st.find(ref)
	if err != nil {
		return Network{}, nil, err
	}
	n := st.networks[i]
	pool, err := n.Pool()
	if err != nil {
		return Network{}, nil, fmt.Errorf("network %s: %w", n.Name, err)
	}
	for sb, ip := range st.leases[n.ID] {
		if sb != sandboxID {
			_ = pool.Reserve(ip) // a lease the network no longer fits is simply not held
		}
	}
	return n, pool, nil
}

func (st *state) setLease(networkID, sandboxID string, ip netip.Addr) {
	st.setLeaseIn(st.leases, networkID, sandboxID, ip)
}

func (st *state) setLeaseIn(leases map[string]map[string]netip.Addr, networkID, sandboxID string, ip netip.Addr) {
	if cur, ok := leases[networkID][sandboxID]; ok && cur == ip {
		return
	}
	if leases[networkID] == nil {
		leases[networkID] = map[string]netip.Addr{}
	}
	leases[networkID][sandboxID] = ip
	st.leasesDirty = true
}

// overlapping finds a network whose subnet of p's family overlaps p.
func (st *state) overlapping(p netip.Prefix) (Network, bool) {
	for _, n := range st.networks {
		if n.Subnet.Overlaps(p) || (n.EnableIPv6 && n.Subnet6.Overlaps(p)) {
			return n, true
		}
	}
	return Network{}, false
}

// freeSubnet6 picks a network's unique local /64 (RFC 4193) when none was
// asked for: fd, then a global id of 40 bits taken from the network's
// random id, then subnet id 0, or the next one that overlaps no network.
func (st *state) freeSubnet6(networkID string) (netip.Prefix, bool) {
	var a [16]byte
	a[0] = 0xfd
	if b, err := hex.DecodeString(networkID[:10]); err == nil {
		copy(a[1:6], b)
	}
	for sub := 0; ; sub++ {
		a[6], a[7] = byte(sub>>8), byte(sub)
		p := netip.PrefixFrom(netip.AddrFrom16(a), 64)
		if _, taken := st.overlapping(p); !taken {
			return p, true
		}
		if sub == 0xffff {
			return netip.Prefix{}, false
		}
	}
}

// freeSubnet returns the first subnet of Docker's default pools that
// overlaps no network: 172.17.0.0/16 ... 172.31.0.0/16 (172.17 is the
// bridge's, so user networks start at 172.18), then 192.168.0.0/16 in /20
// steps.
func (st *state) freeSubnet() (netip.Prefix, bool) {
	for _, p := range defaultPools() {
		if _, taken := st.overlapping(p); !taken {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func defaultPools() []netip.Prefix {
	var out []netip.Prefix
	for b := 17; b <= 31; b++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(b), 0, 0}), 16))
	}
	for b := 0; b < 256; b += 16 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(b), 0}), 20))
	}
	return out
}

// newID returns a random 64-hex-digit id no network has.
func (st *state) newID() (string, error) {
	for {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("generating a network id: %w", err)
		}
		id := hex.EncodeToString(b[:])
		if !slices.ContainsFunc(st.networks, func(n Network) bool { return n.ID == id }) {
			return id, nil
		}
	}
}

// ensureBridge adds the built-in bridge network if it is missing.
func (st *state) ensureBridge() error {
	if slices.ContainsFunc(st.networks, Network.BuiltIn) {
		return nil
	}
	id, err := st.newID()
	if err != nil {
		return err
	}
	st.networks = append(st.networks, Network{
		ID:      id,
		Name:    BridgeName,
		Driver:  DriverBridge,
		Subnet:  bridgeSubnet,
		Gateway: bridgeGateway,
		Created: time.Now().UTC(),
	})
	st.networksDirty = true
	return nil
}

func sortNetworks(ns []Network) {
	slices.SortFunc(ns, func(a, b Network) int {
		if a.BuiltIn() != b.BuiltIn() {
			if a.BuiltIn() {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	})
}

func firstAddr(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}
