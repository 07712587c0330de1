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
//	-> {request}  <- Reply                     one-shot, naming the sandbox (port add/rm from its supervisor), or stats of all segments
//	-> {capture} + the output's fd <- CaptureStatus (running), ... <- CaptureStatus (the counts)
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
	// Capture starts a capture session (network capture).
	Capture *Capture `json:"capture,omitempty"`
}

// Capture asks for a running network's frames in pcap format, written
// to the one descriptor that comes with the Hello (the CLI's file or
// stdout). The daemon answers CaptureStatus{Running} once the capture
// runs (or an Error), and a last CaptureStatus with the counts when it
// ends: after Count frames, or when the client half-closes (or closes)
// the connection.
type Capture struct {
	Network string `json:"network"`          // name or id
	Member  string `json:"member,omitempty"` // only this member's frames (name, alias or id prefix)
	Snaplen int    `json:"snaplen,omitempty"`
	Count   int    `json:"count,omitempty"`
	Filter  string `json:"filter,omitempty"` // stack/pcap's filter language
}

// CaptureStatus is the daemon's word on a capture session.
type CaptureStatus struct {
	Error   string `json:"error,omitempty"`
	Running bool   `json:"running,omitempty"`
	Written uint64 `json:"written"`
	Dropped uint64 `json:"dropped"`
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
	IP        netip.Addr `json:"ip,omitzero"`  // static --ip, or the address held before a daemon restart
	IP6       netip.Addr `json:"ip6,omitzero"` // static --ip6, or the one held before, on a dual-stack network
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
	// Stats, one-shot and naming no sandbox, asks for the counters of
	// every running segment's members (Reply.Networks).
	Stats *struct{} `json:"stats,omitempty"`
}

// Reply answers Attach and Request.
type Reply struct {
	Error    string            `json:"error,omitempty"`
	Ports    []forward.Mapping `json:"ports,omitempty"`    // the member's ports after the change
	Networks []NetworkStats    `json:"networks,omitempty"` // answering Stats
}

// NetworkStats are one running segment's counters.
type NetworkStats struct {
	Network string        `json:"network"`
	ID      string        `json:"id"`
	Members []MemberStats `json:"members"`
}

// MemberStats are one member's counters, from its side (Tx is what it
// sent): its switch port's, and what the gateway holds for it.
type MemberStats struct {
	Name      string            `json:"name"`
	SandboxID string            `json:"sandbox_id"`
	RxBytes   uint64            `json:"rx_bytes"`
	RxPackets uint64            `json:"rx_packets"`
	TxBytes   uint64            `json:"tx_bytes"`
	TxPackets uint64            `json:"tx_packets"`
	Drops     map[string]uint64 `json:"drops"` // by reason, nonzero only
	TCP       int               `json:"tcp"`   // connections open in the gateway
	UDP       int               `json:"udp"`   // flows open in the gateway
	// NoRoute and Capped are its connections the NAT refused: to where
	// it does not go, and at the gateway's limits.
	NoRoute uint64 `json:"nat_no_route"`
	Capped  uint64 `json:"nat_capped"`
	// Published is its published ports' traffic.
	Published PublishedStats `json:"published"`
}

// PublishedStats are a member's published ports' traffic: TCP connections
// by path (the loopback fast path's kernel sockets, or the gVisor stack),
// UDP flows, and the bytes relayed to the member and from it.
type PublishedStats struct {
	FastTCP   uint64 `json:"fast_tcp"`
	GVisorTCP uint64 `json:"gvisor_tcp"`
	UDPFlows  uint64 `json:"udp_flows"`
	BytesIn   uint64 `json:"bytes_in"`
	BytesOut  uint64 `json:"bytes_out"`
}

// Validate checks that exactly one member is set.
func (h *Hello) Validate() error {
	return ExactlyOne(h.Join != nil, h.Lease != nil, h.Request != nil, h.Capture != nil)
}

// Validate checks that a request asks for one thing: a change of ports
// (adding, removing or both), a dial channel or the stats.
func (r *Request) Validate() error {
	return ExactlyOne(r.AddPorts != nil || r.RemovePorts != nil, r.DialChannel != nil, r.Stats != nil)
}
