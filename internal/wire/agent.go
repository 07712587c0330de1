package wire

import (
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/netns-run/netns-run/tap"
)

// The vocabulary between a sandbox's supervisor (internal/sandbox) and its
// agent (internal/agent, pid 1 inside), and of the exec socket, client <->
// supervisor. One JSON AgentMessage per SOCK_SEQPACKET packet, descriptors
// as SCM_RIGHTS:
//
//	-> {mapped}                                   id maps written (--userns auto only)
//	-> {spec}
//	<- {made: {link, warnings, listeners}} + TAP fd + listener fds   or {failed}, then the agent exits
//	-> {add_link} ... <- {link_added} + fd        before the start: interfaces moved in (kernel macvlan)
//	-> {start}
//	<- {failed}                                    the command could not start; the agent exits
//	-> {exec: {id, argv, env, dir, tty}} + 3 fds   stdin, stdout, stderr of the new process
//	<- {exec_started: {id, pid}}                   pid as seen in the sandbox
//	<- {exec_exited: {id, pid, code, stopped}}     or {exec_exited: {id, code, error}} if it could not start
//	-> {signal: {id, signal}}                      to a running exec
//	-> {dial_channel} + 1 fd                       serve dials on it (dialframe.go)
//	-> {add_link} <- {link_added} + fd             another interface (network connect)
//
// and on the exec socket the same exec messages without ids.

// AgentEnv marks a re-executed process as a sandbox agent; its value is the
// stage. The agent removes it from the command's environment (see
// docs/ARCHITECTURE.md, Measured facts: The agent's environment marker).
const AgentEnv = "_NETNS_RUN_SANDBOX"

// The stages of AgentEnv: an agent waiting for its id maps, or a working one.
const (
	StageRemap = "remap"
	StageAgent = "agent"
)

// AgentControlFD is where the supervisor puts the agent's end of the
// control socket.
const AgentControlFD = 3

// Exit statuses, as Docker's.
const (
	ExitOwnError     = 125 // netns-run itself failed
	ExitCannotInvoke = 126 // the command exists but cannot be run
	ExitNotFound     = 127 // the command was not found
	// ExitKilled is the status of a process killed by SIGKILL (128+9), as
	// Docker reports an exec killed with its container.
	ExitKilled = 137
)

// MaxLoopbackTCP bounds Spec.LoopbackTCP.
const MaxLoopbackTCP = 64

// ForwardedSignals are passed on by the supervisor to the command, as
// docker run's sig-proxy; the agent catches them from its start.
var ForwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

// Spec is what the sandbox is Made of.
type Spec struct {
	// Build is the supervisor's (Build): an agent of another build
	// refuses the spec, since the messages may have changed between them.
	Build    string      `json:"build,omitempty"`
	Hostname string      `json:"hostname"`
	Link     *tap.Config `json:"link,omitempty"` // nil: no eth0, only lo (--network none)
	// HostNetwork keeps the caller's network namespace (--network host):
	// no new one, and the agent leaves the network alone.
	HostNetwork bool `json:"host_network,omitempty"`
	// Tty: the command's stdin is a pty's terminal, to become its
	// controlling terminal in a session of its own (run -t).
	Tty bool `json:"tty,omitempty"`
	// Files maps a path in the sandbox (/etc/hosts, ...) to its content.
	Files map[string][]byte `json:"files,omitempty"`
	Argv  []string          `json:"argv"`
	Env   []string          `json:"env"`
	// LoopbackTCP are ports the agent listens on, on 127.0.0.1 and ::1,
	// before the command starts (Sandbox.LoopbackListeners).
	LoopbackTCP []uint16 `json:"loopback_tcp,omitempty"`
}

// AgentMessage is one packet on the supervisor-agent socket and on the exec
// socket: a tagged union, exactly one member set (Validate, checked on
// every receive).
type AgentMessage struct {
	Mapped *struct{} `json:"mapped,omitempty"` // supervisor -> agent: id maps written
	Spec   *Spec     `json:"spec,omitempty"`   // supervisor -> agent, first
	Made   *Made     `json:"Made,omitempty"`   // agent -> supervisor: eth0 Made, with its fd and the listeners'
	Start  *struct{} `json:"start,omitempty"`  // supervisor -> agent: run the command
	Failed *Failure  `json:"failed,omitempty"` // agent -> supervisor, then it exits

	Exec        *ExecSpec   `json:"exec,omitempty"`         // -> agent, with 3 fds: run a command
	ExecStarted *ExecStatus `json:"exec_started,omitempty"` // <- agent: it runs
	ExecExited  *ExecStatus `json:"exec_exited,omitempty"`  // <- agent: it ended, or never started
	Signal      *ExecSignal `json:"signal,omitempty"`       // -> agent: signal an exec
	DialChannel *struct{}   `json:"dial_channel,omitempty"` // -> agent, with 1 fd: serve dials on it (dialframe.go)

	AddLink   *tap.Config `json:"add_link,omitempty"`   // -> agent: make another interface
	LinkAdded *LinkAdded  `json:"link_added,omitempty"` // <- agent, with its fd
}

// Validate checks that exactly one member is set.
func (m *AgentMessage) Validate() error {
	return ExactlyOne(m.Mapped != nil, m.Spec != nil, m.Made != nil, m.Start != nil, m.Failed != nil,
		m.Exec != nil, m.ExecStarted != nil, m.ExecExited != nil, m.Signal != nil, m.DialChannel != nil,
		m.AddLink != nil, m.LinkAdded != nil)
}

// Made is the agent's answer to the spec.
type Made struct {
	Link     *tap.Mode `json:"link,omitempty"` // with eth0's fd first; nil: lo only
	Warnings []string  `json:"warnings,omitempty"`
	// Listeners counts the descriptors after eth0's: Spec.LoopbackTCP's sockets.
	Listeners int `json:"listeners,omitempty"`
}

// Failure is what stopped the agent, and the exit status it implies.
type Failure struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

// RecvAgent reads one AgentMessage of the union.
func RecvAgent(c *net.UnixConn) (AgentMessage, []int, error) {
	var m AgentMessage
	fds, err := Recv(c, &m)
	return m, fds, err
}

// Present is the value of a union member that carries nothing but itself.
var Present = &struct{}{}

// LinkAdded answers AddLink.
type LinkAdded struct {
	Mode  tap.Mode `json:"mode,omitempty"`
	Error string   `json:"error,omitempty"`
}

// ExecSpec asks for one process in the running sandbox.
type ExecSpec struct {
	ID   uint64   `json:"id,omitempty"`
	Argv []string `json:"argv"`
	Env  []string `json:"env"` // null: the command's environment
	// EnvSet are KEY=VALUE set on top of Env (exec -e).
	EnvSet []string `json:"env_set,omitempty"`
	Dir    string   `json:"dir,omitempty"`
	Tty    bool     `json:"tty,omitempty"`
	// User is exec -u's USER[:GROUP], resolved inside the sandbox; empty:
	// the sandbox's root.
	User string `json:"user,omitempty"`
}

// ExecStatus reports an exec's start or end.
type ExecStatus struct {
	ID    uint64 `json:"id,omitempty"`
	Pid   int    `json:"pid,omitempty"`
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"` // it could not start (Code says why) or was refused
	// Stopped: it was killed because the sandbox ended (its command exited).
	Stopped bool `json:"stopped,omitempty"`
}

// ExecSignal sends a signal to the exec with ID.
type ExecSignal struct {
	ID     uint64 `json:"id,omitempty"`
	Signal int    `json:"signal"`
}

// NextAgentMessage is RecvAgent for a conversation that goes on: a message
// that could not be taken is dropped (with its descriptors), and the next
// one read. An error means the peer is gone.
func NextAgentMessage(c *net.UnixConn) (AgentMessage, []int, error) {
	for {
		m, fds, err := RecvAgent(c)
		var bad *DecodeError
		if !errors.As(err, &bad) {
			return m, fds, err
		}
	}
}
