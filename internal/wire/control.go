package wire

import (
	"net/netip"

	"github.com/netns-run/netns-run/forward"
)

// The control socket of a sandbox's supervisor (internal/runner): one
// ControlRequest per connection, answered by one ControlReply. An attach
// connection goes on (internal/sandbox):
//
//	-> {attach} + the client's stdin and stdout (a terminal sandbox only)
//	<- {attach: {tty}}, or {error}
//	-> {resize}, {signal}                      any number
//	<- {attach: {detached}} or {attach: {exited, code}}, then it closes

// ControlRequest is what `netns-run network connect|disconnect`,
// `netns-run port add|rm` and `netns-run stats` ask a sandbox's
// supervisor, over its control socket.
type ControlRequest struct {
	Connect     *ConnectRequest    `json:"connect,omitempty"`
	Disconnect  *DisconnectRequest `json:"disconnect,omitempty"`
	AddPorts    *PortsRequest      `json:"add_ports,omitempty"`
	RemovePorts *PortsRequest      `json:"remove_ports,omitempty"`
	Attach      *AttachRequest     `json:"attach,omitempty"`
	// Resize, on an attach connection: the client's terminal changed
	// size (the supervisor reads it from the stdout it was given).
	Resize *struct{} `json:"resize,omitempty"`
	// Signal, on an attach connection: for the sandbox's command.
	Signal *ExecSignal `json:"signal,omitempty"`
	// Stats asks a --network private sandbox's supervisor, which hosts
	// that network, for its counters (ControlReply.Stats).
	Stats *struct{} `json:"stats,omitempty"`
}

// AttachRequest connects the client to the sandbox's command, as docker
// attach: to its terminal (stdin and stdout come with it), or for the
// status at its end only (the client reads the log itself).
type AttachRequest struct {
	// DetachKeys typed on stdin detach the client (Docker's ctrl-p
	// ctrl-q by default); empty: none.
	DetachKeys []byte `json:"detach_keys,omitempty"`
	// Stdin: the first descriptor is stdin, to copy into the terminal
	// (attach --no-stdin: only stdout comes).
	Stdin bool `json:"stdin,omitempty"`
}

// AttachStatus is the supervisor's word on an attach connection.
type AttachStatus struct {
	Tty      bool `json:"tty,omitempty"`      // first: attached to the command's terminal
	Detached bool `json:"detached,omitempty"` // the detach keys were typed
	Exited   bool `json:"exited,omitempty"`   // the command ended with Code
	Code     int  `json:"code,omitempty"`
}

// ConnectRequest puts a running sandbox on one more network.
type ConnectRequest struct {
	Network string     `json:"network"`
	IP      netip.Addr `json:"ip,omitzero"`
	IP6     netip.Addr `json:"ip6,omitzero"`
	Aliases []string   `json:"aliases,omitempty"`
}

// DisconnectRequest takes a running sandbox off a network it was
// connected to.
type DisconnectRequest struct {
	Network string `json:"network"` // name or id
}

// Validate checks that exactly one member is set.
func (r *ControlRequest) Validate() error {
	return ExactlyOne(r.Connect != nil, r.Disconnect != nil, r.AddPorts != nil, r.RemovePorts != nil,
		r.Attach != nil, r.Resize != nil, r.Signal != nil, r.Stats != nil)
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
	// Attach is the state of an attach connection.
	Attach *AttachStatus `json:"attach,omitempty"`
	// Stats are the private network's counters, answering Stats.
	Stats *MemberStats `json:"stats,omitempty"`
}
