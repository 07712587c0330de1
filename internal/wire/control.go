package wire

import (
	"net/netip"

	"github.com/netns-run/netns-run/forward"
)

// The control socket of a sandbox's supervisor (internal/runner): one
// ControlRequest per connection, answered by one ControlReply.

// ControlRequest is what `netns-run network connect|disconnect` and
// `netns-run port add|rm` ask a sandbox's supervisor, over its control
// socket.
type ControlRequest struct {
	Connect     *ConnectRequest    `json:"connect,omitempty"`
	Disconnect  *DisconnectRequest `json:"disconnect,omitempty"`
	AddPorts    *PortsRequest      `json:"add_ports,omitempty"`
	RemovePorts *PortsRequest      `json:"remove_ports,omitempty"`
}

// ConnectRequest puts a running sandbox on one more network.
type ConnectRequest struct {
	Network string     `json:"network"`
	IP      netip.Addr `json:"ip,omitzero"`
	Aliases []string   `json:"aliases,omitempty"`
}

// DisconnectRequest takes a running sandbox off a network it was
// connected to.
type DisconnectRequest struct {
	Network string `json:"network"` // name or id
}

// Validate checks that exactly one member is set.
func (r *ControlRequest) Validate() error {
	return ExactlyOne(r.Connect != nil, r.Disconnect != nil, r.AddPorts != nil, r.RemovePorts != nil)
}

// PortsRequest publishes more ports of a running sandbox, or withdraws
// some; a withdrawn mapping without a host port or address matches any.
type PortsRequest struct {
	Ports []forward.Mapping `json:"ports"`
}

// ControlReply answers a ControlRequest.
type ControlReply struct {
	Error string            `json:"error,omitempty"`
	Ports []forward.Mapping `json:"ports,omitempty"` // the sandbox's published ports after AddPorts or RemovePorts
}
