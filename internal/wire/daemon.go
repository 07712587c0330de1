package wire

import (
	"net/netip"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/internal/netstore"
)

// The member session, supervisor <-> the per-user network daemon
// (internal/daemon): one SOCK_SEQPACKET connection to its members.sock.
//
//	-> {join} <- Joined, -> Attach + eth0's fd <- Reply, then Requests <- Reply
//	-> {lease} <- Joined                       a kernel macvlan member's address, held while the connection lasts
//	-> {request}  <- Reply                     one-shot, naming the sandbox (port add/rm from its supervisor)
//
// The session lasting is the membership: when the connection closes, for
// whatever reason, the member's address and ports are released.

// LinkedName is one --link NAME[:ALIAS].
type LinkedName struct {
	Name  string `json:"name"`
	Alias string `json:"alias,omitempty"`
}

// Hello is the first message on a connection: a Join starts a member
// session, a Lease a lease session, a Request is a one-shot change to
// another session's member.
type Hello struct {
	Join    *Join    `json:"join,omitempty"`
	Lease   *Lease   `json:"lease,omitempty"`
	Request *Request `json:"request,omitempty"`
}

// Join asks for a place on a network.
type Join struct {
	SandboxID    string            `json:"sandbox_id"`
	Name         string            `json:"name"`
	Network      string            `json:"network"`
	IP           netip.Addr        `json:"ip,omitzero"`   // static --ip, or the address held before a daemon restart
	IP6          netip.Addr        `json:"ip6,omitzero"`  // static --ip6 on a dual-stack network, or the one held before
	MAC          string            `json:"mac,omitempty"` // --mac-address
	Aliases      []string          `json:"aliases,omitempty"`
	Links        []LinkedName      `json:"links,omitempty"`
	Ports        []forward.Mapping `json:"ports,omitempty"`
	HostLoopback bool              `json:"host_loopback,omitempty"`
	// DNS are run --dns's upstreams, for the network's resolver to forward
	// this member's queries to (a user-defined network; its resolv.conf
	// keeps the gateway).
	DNS []netip.AddrPort `json:"dns,omitempty"`
	// Secondary is a further network of a running sandbox (network
	// connect): its published ports stay with its first network.
	Secondary bool `json:"secondary,omitempty"`
	// FastPath: once the command runs, the session brings a dial channel
	// (Request.DialChannel) for the loopback fast path of the published
	// ports. Loopback clients that come earlier wait for it, so that
	// they all appear in the sandbox alike (as 127.0.0.1).
	FastPath bool `json:"fast_path,omitempty"`
}

// Lease asks for an address on a kernel macvlan network, whose segment is
// the kernel's: the daemon serves no member there, it only holds the
// address in the network store for as long as the session lasts, and
// gives it back when the connection closes, even if the supervisor was
// killed with SIGKILL.
type Lease struct {
	SandboxID string     `json:"sandbox_id"`
	Network   string     `json:"network"`
	IP        netip.Addr `json:"ip,omitzero"` // static --ip, or the address held before a daemon restart
}

// Joined answers Join: the member's configuration, or Error. It answers
// Lease too, with Network and IP only.
type Joined struct {
	Error     string            `json:"error,omitempty"`
	Network   netstore.Network  `json:"network"`
	IP        netip.Addr        `json:"ip,omitzero"`
	IP6       netip.Addr        `json:"ip6,omitzero"` // on a dual-stack network (Network.EnableIPv6)
	MAC       string            `json:"mac,omitempty"`
	Ports     []forward.Mapping `json:"ports,omitempty"` // as bound: auto ports filled in
	LinkHosts []hosts.Entry     `json:"link_hosts,omitempty"`
}

// Attach carries the member's eth0 descriptor (SCM_RIGHTS).
type Attach struct{}

// Request is a later message of a session, or the only message of a
// one-shot connection that names the sandbox.
type Request struct {
	SandboxID   string            `json:"sandbox_id,omitempty"`
	AddPorts    []forward.Mapping `json:"add_ports,omitempty"`
	RemovePorts []forward.Mapping `json:"remove_ports,omitempty"`
	// DialChannel, on a member's own session after Attach, comes with one
	// descriptor: a dial channel into the member's sandbox
	// (sandbox.OpenDialChannel). Through it the daemon serves the host's
	// loopback clients of the member's published TCP ports with sockets
	// connected inside the sandbox (the loopback fast path), until the
	// session ends or another channel replaces it. A rejoining member
	// sends a fresh one: a channel does not outlive the daemon it went to.
	// With no descriptor it says that none will come (the sandbox could
	// not open one): loopback clients then take the gVisor path.
	DialChannel *struct{} `json:"dial_channel,omitempty"`
}

// Reply answers Attach and Request.
type Reply struct {
	Error string            `json:"error,omitempty"`
	Ports []forward.Mapping `json:"ports,omitempty"` // the member's ports after the change
}

// Validate checks that exactly one member is set.
func (h *Hello) Validate() error {
	return ExactlyOne(h.Join != nil, h.Lease != nil, h.Request != nil)
}

// Validate checks that a request asks for one thing: a change of ports
// (adding, removing or both) or a dial channel.
func (r *Request) Validate() error {
	return ExactlyOne(r.AddPorts != nil || r.RemovePorts != nil, r.DialChannel != nil)
}
