//go:build linux

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/runner"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/spf13/cobra"
)

func openStore() (*netstore.Store, error) {
	dir, err := netstore.DefaultDir()
	if err != nil {
		return nil, err
	}
	return netstore.Open(dir)
}

// openStoreAndRegistry opens both: the network commands check members.
func openStoreAndRegistry() (*netstore.Store, *registry.Registry, error) {
	store, err := openStore()
	if err != nil {
		return nil, nil, err
	}
	reg, err := openRegistry()
	return store, reg, err
}

func openRegistry() (*registry.Registry, error) {
	_, reg, err := registry.OpenDefault()
	return reg, err
}

func newNetworkCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks shared by sandboxes"}
	cmd.AddCommand(newNetworkCreate(), newNetworkLs(), newNetworkInspect(), newNetworkRm(), newNetworkPrune(),
		newNetworkConnect(), newNetworkDisconnect())
	return cmd
}

func newNetworkCreate() *cobra.Command {
	var driver, ipRange string
	var subnets, gateways []string
	var internal, ipv6 bool
	var opts []string
	cmd := &cobra.Command{
		Use:   "create [flags] NAME",
		Short: "Create a network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := netstore.CreateRequest{Name: args[0], Driver: driver, Internal: internal, IPv6: ipv6, Options: map[string]string{}}
			if err := subnetsByFamily(&req, subnets, gateways); err != nil {
				return err
			}
			var err error
			if ipRange != "" {
				if req.IPRange, err = netip.ParsePrefix(ipRange); err != nil || !req.IPRange.Addr().Is4() {
					return fmt.Errorf("invalid --ip-range %q: want an IPv4 CIDR like 192.168.57.128/25 (IPv6 addresses are handed out from the subnet's ::2 on)", ipRange)
				}
			}
			for _, o := range opts {
				k, v, ok := strings.Cut(o, "=")
				if !ok {
					return fmt.Errorf("invalid -o %q: want KEY=VALUE", o)
				}
				req.Options[k] = v
			}
			if err := req.Check(); err != nil {
				return err
			}
			undo := func() {}
			if parent := req.Options[netstore.OptParent]; req.Driver == netstore.DriverMacvlan && parent != "" {
				if undo, err = runner.PrepareKernelMacvlan(parent, req.Options[netstore.OptPromisc] == "on"); err != nil {
					return err
				}
			}
			store, err := openStore()
			if err != nil {
				undo()
				return err
			}
			n, err := store.Create(req)
			if err != nil {
				undo()
				return err
			}
			fmt.Println(n.ID)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&driver, "driver", "d", netstore.DriverBridge, "bridge or macvlan")
	stringListVarP(fs, &subnets, "subnet", "", "subnet in CIDR form, one IPv4 and with --ipv6 one IPv6 (default: the next free 172.18+.0.0/16; for IPv6 a unique local /64)")
	stringListVarP(fs, &gateways, "gateway", "", "gateway address of the subnet of its family (default: the subnet's first)")
	fs.BoolVar(&ipv6, "ipv6", false, "dual stack: an IPv6 subnet beside the IPv4 one; members get an address of each (--ip6 picks one), AAAA records and IPv6 clients of their published ports")
	fs.StringVar(&ipRange, "ip-range", "", "allocate member addresses from this CIDR inside the subnet")
	fs.BoolVar(&internal, "internal", false, "no outbound access")
	stringListVarP(fs, &opts, "opt", "o", "driver option (macvlan): macvlan_mode=bridge|private (members may talk to each other, or only to the outside); "+
		"parent=IFACE (kernel macvlan sub-interfaces of the host's IFACE, which needs CAP_NET_ADMIN over it: checked at create; without it, a userspace macvlan segment); "+
		"promisc=on|off (with parent: make IFACE promiscuous at create, taken back by network rm)")
	return cmd
}

// subnetsByFamily puts --subnet and --gateway values into req, as Docker
// pairs them: at most one of each family, a gateway with the subnet of its
// family.
func subnetsByFamily(req *netstore.CreateRequest, subnets, gateways []string) error {
	for _, s := range subnets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("invalid --subnet %q: want a CIDR like 192.168.57.0/24 or fd00:db8:1::/64", s)
		}
		dst := &req.Subnet
		if p.Addr().Is6() {
			dst = &req.Subnet6
		}
		if dst.IsValid() {
			return fmt.Errorf("--subnet %s: a network has one subnet per family, and %s is of the same family", p, *dst)
		}
		*dst = p
	}
	for _, g := range gateways {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return fmt.Errorf("invalid --gateway %q: want an IPv4 or IPv6 address", g)
		}
		dst := &req.Gateway
		if a.Is6() {
			dst = &req.Gateway6
		}
		if dst.IsValid() {
			return fmt.Errorf("--gateway %s: one gateway per family, and %s is of the same family", a, *dst)
		}
		*dst = a
	}
	return nil
}

func newNetworkLs() *cobra.Command {
	var quiet, noTrunc bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls [-q] [--no-trunc] [--filter KEY=VALUE]... [--format TEMPLATE]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Long: `List networks by name, as docker network ls. --format takes a Go template
with Docker's fields (.ID .Name .Driver .Scope .IPv6 .Internal .CreatedAt);
--filter: name= (a part of the name), id= (a prefix), driver=.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			match, err := networkFilter(filters)
			if err != nil {
				return err
			}
			store, err := openStore()
			if err != nil {
				return err
			}
			nets, err := allNetworks(store)
			if err != nil {
				return err
			}
			var rows []networkRow
			for _, n := range nets {
				if !match(n) {
					continue
				}
				id := n.ID
				if !noTrunc {
					id = n.ShortID()
				}
				rows = append(rows, networkRow{ID: id, Name: n.Name, Driver: n.Driver, Scope: "local", IPv6: fmt.Sprint(n.EnableIPv6),
					Internal: fmt.Sprint(n.Internal), CreatedAt: n.Created.Local().Format("2006-01-02 15:04:05.999999999 -0700 MST")})
			}
			switch {
			case quiet:
				format = "{{.ID}}"
			case format == "":
				format = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
			}
			return writeFormatted(os.Stdout, format, networkHeader, rows)
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&quiet, "quiet", "q", false, "only ids")
	fs.BoolVar(&noTrunc, "no-trunc", false, "full ids")
	fs.StringVar(&format, "format", "", "a Go template per network (see above)")
	stringListVarP(fs, &filters, "filter", "f", "name=, id= or driver= (repeatable; all must match)")
	return cmd
}

// networkRow is one line of network ls, with Docker's field names.
type networkRow struct{ ID, Name, Driver, Scope, IPv6, Internal, CreatedAt, Labels string }

// Label is Docker's {{.Label "KEY"}}: networks here have no labels.
func (networkRow) Label(string) string { return "" }

var networkHeader = networkRow{ID: "NETWORK ID", Name: "NAME", Driver: "DRIVER", Scope: "SCOPE", IPv6: "IPV6", Internal: "INTERNAL", CreatedAt: "CREATED", Labels: "LABELS"}

// networkFilter is the conjunction of network ls's --filter terms.
func networkFilter(terms []string) (func(netstore.Network) bool, error) {
	var tests []func(netstore.Network) bool
	for _, t := range terms {
		k, v, ok := strings.Cut(t, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("invalid --filter %q: want KEY=VALUE (name, id, driver)", t)
		}
		switch k {
		case "name":
			tests = append(tests, func(n netstore.Network) bool { return strings.Contains(n.Name, v) })
		case "id":
			tests = append(tests, func(n netstore.Network) bool { return strings.HasPrefix(n.ID, v) })
		case "driver":
			tests = append(tests, func(n netstore.Network) bool { return n.Driver == v })
		default:
			return nil, fmt.Errorf("invalid --filter %q: the keys are name, id and driver", t)
		}
	}
	return func(n netstore.Network) bool {
		for _, test := range tests {
			if !test(n) {
				return false
			}
		}
		return true
	}, nil
}

// networkView is `network inspect` output, in the shape of Docker's
// network resource (the same names and types, in Docker's order).
type networkView struct {
	Name       string                   `json:"Name"`
	ID         string                   `json:"Id"`
	Created    string                   `json:"Created"`
	Scope      string                   `json:"Scope"`
	Driver     string                   `json:"Driver"`
	EnableIPv6 bool                     `json:"EnableIPv6"`
	IPAM       ipamView                 `json:"IPAM"`
	Internal   bool                     `json:"Internal"`
	Attachable bool                     `json:"Attachable"`
	Ingress    bool                     `json:"Ingress"`
	ConfigFrom struct{ Network string } `json:"ConfigFrom"`
	ConfigOnly bool                     `json:"ConfigOnly"`
	Containers map[string]containerView `json:"Containers"`
	Options    map[string]string        `json:"Options"`
	Labels     map[string]string        `json:"Labels"`
}

type ipamView struct {
	Driver  string            `json:"Driver"`
	Options map[string]string `json:"Options"`
	Config  []ipamConfig      `json:"Config"`
}

type ipamConfig struct {
	Subnet  string `json:"Subnet"`
	IPRange string `json:"IPRange,omitempty"`
	Gateway string `json:"Gateway"`
}

type containerView struct {
	Name        string `json:"Name"`
	EndpointID  string `json:"EndpointID"`
	MacAddress  string `json:"MacAddress"`
	IPv4Address string `json:"IPv4Address"`
	IPv6Address string `json:"IPv6Address"`
}

func newNetworkInspect() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [-f TEMPLATE] NETWORK...",
		Short: "Show networks as JSON, with their members, or through a Go template",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, reg, err := openStoreAndRegistry()
			if err != nil {
				return err
			}
			recs, err := reg.List()
			if err != nil {
				return err
			}
			var out []networkView
			for _, ref := range args {
				n, err := findNetwork(store, ref)
				if err != nil {
					return err
				}
				out = append(out, inspectNetwork(n, recs))
			}
			return writeInspect(os.Stdout, format, out)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "a Go template run on each network, with Docker's field names")
	return cmd
}

// inspectNetwork is n as `network inspect` shows it, with the running
// sandboxes among recs that are on it.
func inspectNetwork(n netstore.Network, recs []registry.Record) networkView {
	v := networkView{Name: n.Name, ID: n.ID, Created: dockerTime(n.Created), Scope: "local", Driver: n.Driver, EnableIPv6: n.EnableIPv6,
		Internal: n.Internal, Options: n.Options, Containers: map[string]containerView{}, Labels: map[string]string{}}
	v.IPAM.Driver, v.IPAM.Options = "default", map[string]string{}
	if v.Options == nil {
		v.Options = map[string]string{}
	}
	v.IPAM.Config = []ipamConfig{}
	if n.Subnet.IsValid() {
		c := ipamConfig{Subnet: n.Subnet.String(), Gateway: n.Gateway.String()}
		if n.IPRange.IsValid() {
			c.IPRange = n.IPRange.String()
		}
		v.IPAM.Config = []ipamConfig{c}
	}
	if n.EnableIPv6 {
		v.IPAM.Config = append(v.IPAM.Config, ipamConfig{Subnet: n.Subnet6.String(), Gateway: n.Gateway6.String()})
	}
	for _, r := range recs {
		if r.State != registry.Running {
			continue
		}
		if _, virtual := virtualDrivers[n.Name]; virtual && r.Network == n.Name {
			v.Containers[r.ID] = containerView{Name: r.Name, EndpointID: endpointID(n.ID, r.ID)}
			continue
		}
		for _, ep := range endpoints(r) {
			if ep.NetworkID == n.ID && ep.IP.IsValid() {
				c := containerView{Name: r.Name, EndpointID: endpointID(n.ID, r.ID), MacAddress: ep.MAC, IPv4Address: fmt.Sprintf("%s/%d", ep.IP, ep.Prefix)}
				if ep.IP6.IsValid() {
					c.IPv6Address = fmt.Sprintf("%s/%d", ep.IP6, ep.Prefix6)
				}
				v.Containers[r.ID] = c
			}
		}
	}
	return v
}

// endpointID names a sandbox's attachment to a network, as Docker's 64-hex
// endpoint ids do: derived from both ids, so that inspect and network
// inspect agree without a record of its own.
func endpointID(networkID, sandboxID string) string {
	sum := sha256.Sum256([]byte(networkID + "/" + sandboxID))
	return hex.EncodeToString(sum[:])
}

// inUse refuses removing a network that running sandboxes are on.
func inUse(reg *registry.Registry) func(netstore.Network) error {
	return func(n netstore.Network) error {
		recs, err := reg.List()
		if err != nil {
			return err
		}
		var names []string
		for _, r := range recs {
			if r.State != registry.Running {
				continue
			}
			for _, ep := range endpoints(r) {
				if ep.NetworkID == n.ID {
					names = append(names, r.Name)
				}
			}
		}
		if len(names) > 0 {
			return fmt.Errorf("network %s is in use by %s: stop them first", n.Name, strings.Join(names, ", "))
		}
		return nil
	}
}

func newNetworkRm() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "Remove networks",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, reg, err := openStoreAndRegistry()
			if err != nil {
				return err
			}
			for _, ref := range args {
				n, err := findNetwork(store, ref)
				if err != nil {
					return err
				}
				if _, virtual := virtualDrivers[n.Name]; virtual {
					return fmt.Errorf("%s is a pre-defined network and cannot be removed", n.Name)
				}
				if err := store.Remove(ref, inUse(reg)); err != nil {
					return err
				}
				if err := runner.ReleaseKernelMacvlan(n); err != nil {
					fmt.Fprintf(os.Stderr, "netns-run: network %s removed, but: %v\n", n.Name, err)
				}
				fmt.Println(ref)
			}
			return nil
		},
	}
}

func newNetworkPrune() *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove every user-defined network no sandbox is on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, reg, err := openStoreAndRegistry()
			if err != nil {
				return err
			}
			nets, err := store.List()
			if err != nil {
				return err
			}
			for _, n := range nets {
				if n.BuiltIn() {
					continue
				}
				if err := store.Remove(n.ID, inUse(reg)); err == nil {
					if err := runner.ReleaseKernelMacvlan(n); err != nil {
						fmt.Fprintf(os.Stderr, "netns-run: network %s removed, but: %v\n", n.Name, err)
					}
					fmt.Println(n.Name)
				}
			}
			return nil
		},
	}
}

// endpoints are every network a sandbox is on: the one it started on,
// then those connected since.
func endpoints(r registry.Record) []registry.Endpoint {
	out := []registry.Endpoint{{Network: r.Network, NetworkID: r.NetworkID, Interface: "eth0", IP: r.IP, Prefix: r.Prefix, Gateway: r.Gateway, MAC: r.MAC, Aliases: r.Aliases,
		IP6: r.IP6, Prefix6: r.Prefix6, Gateway6: r.Gateway6}}
	return append(out, r.Extra...)
}

func newNetworkConnect() *cobra.Command {
	var ip, ip6 string
	var aliases []string
	cmd := &cobra.Command{
		Use:   "connect [--ip IP] [--ip6 IP6] [--alias A] NETWORK SANDBOX",
		Short: "Put a running sandbox on one more network (its next ethN)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := wire.ConnectRequest{Network: args[0], Aliases: aliases}
			if ip != "" {
				a, err := netip.ParseAddr(ip)
				if err != nil || !a.Is4() {
					return fmt.Errorf("invalid --ip %q: want an IPv4 address", ip)
				}
				req.IP = a
			}
			if ip6 != "" {
				a, err := parseIP6Flag(ip6)
				if err != nil {
					return err
				}
				req.IP6 = a
			}
			rec, err := runningRecord(args[1])
			if err != nil {
				return err
			}
			store, err := openStore()
			if err != nil {
				return err
			}
			n, err := findNetwork(store, args[0])
			if err != nil {
				return err
			}
			if _, virtual := virtualDrivers[n.Name]; virtual {
				return fmt.Errorf("a sandbox cannot be connected to the %s network: pick it at run (--network %s)", n.Name, n.Name)
			}
			if req.IP6.IsValid() && !n.EnableIPv6 {
				return fmt.Errorf("--ip6 %s: network %s has no IPv6 (create it with --ipv6)", req.IP6, n.Name)
			}
			return runner.Control(rec.ControlSocket, wire.ControlRequest{Connect: &req})
		},
	}
	cmd.Flags().StringVar(&ip, "ip", "", "static IPv4 address on the network")
	cmd.Flags().StringVar(&ip6, "ip6", "", "static IPv6 address on a dual-stack network (network create --ipv6)")
	stringListVarP(cmd.Flags(), &aliases, "alias", "", "another name the network's DNS answers for the sandbox (repeatable)")
	return cmd
}

func newNetworkDisconnect() *cobra.Command {
	return &cobra.Command{
		Use:   "disconnect NETWORK SANDBOX",
		Short: "Take a sandbox off a network it was connected to",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := runningRecord(args[1])
			if err != nil {
				return err
			}
			return runner.Control(rec.ControlSocket, wire.ControlRequest{Disconnect: &wire.DisconnectRequest{Network: args[0]}})
		},
	}
}

// runningRecord finds a running sandbox with a control socket.
func runningRecord(ref string) (registry.Record, error) {
	_, rec, err := findSandbox(ref)
	if err != nil {
		return rec, err
	}
	if rec.State != registry.Running || rec.ControlSocket == "" {
		return rec, fmt.Errorf("sandbox %s is not running", ref)
	}
	return rec, nil
}
