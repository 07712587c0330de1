// Package sandbox starts a command in its own user, network, mount, uts and
// pid namespaces. The supervisor side (Start) re-executes this binary as the
// sandbox agent (ChildMain), which makes eth0, hands its descriptor back over
// a unix socket, places the hosts files, mounts a fresh /proc and then runs
// the command and waits for it.
//
// The agent is pid 1 of the sandbox's pid namespace: it reaps every orphan,
// and when it exits the kernel kills whatever is left in the sandbox. While
// the command runs it keeps serving its supervisor: it spawns the commands
// of Exec (docker exec) inside the sandbox, since a multithreaded Go process
// cannot setns into a user namespace. Nothing here knows about the
// host-side stack.
//
// Protocol (one JSON message per SOCK_SEQPACKET packet, descriptors as
// SCM_RIGHTS), supervisor <-> agent:
//
//	-> {mapped}                                 id maps written (--userns auto only)
//	-> {spec}
//	<- {link, warnings, listeners} + TAP fd + listener fds   or {error, code}, then the agent exits
//	-> {start}
//	<- {error, code}                             the command could not start; the agent exits
//	-> {exec: {id, argv, env, dir, tty}} + 3 fds  stdin, stdout, stderr of the new process
//	<- {execStarted: {id, pid}}                  pid as seen in the sandbox
//	<- {execExited: {id, pid, code, stopped}}    or {execExited: {id, code, error}} if it could not start
//	-> {signal: {id, signal}}                    to a running exec
//
// and on the exec socket (ServeExec, ExecVia), client <-> supervisor, the
// same messages without ids: {exec} + 3 fds, {execStarted}, {signal},
// {execExited}.
package sandbox

import (
	"errors"
	"net"

	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
)

// childEnv marks a re-executed process as the sandbox agent. It is removed
// from the command's environment (docs/ARCHITECTURE.md, Measured facts).
const childEnv = "_NETNS_RUN_SANDBOX"

// The values of childEnv: an agent waiting for its id maps, or a working one.
const (
	stageRemap = "remap"
	stageAgent = "agent"
)

// Exit statuses, as Docker's.
const (
	ExitOwnError     = 125 // netns-run itself failed
	ExitCannotInvoke = 126 // the command exists but cannot be run
	ExitNotFound     = 127 // the command was not found
)

// MaxLoopbackTCP bounds Spec.LoopbackTCP.
const MaxLoopbackTCP = 64

// Spec is what the sandbox is made of.
type Spec struct {
	Hostname string      `json:"hostname"`
	Link     *tap.Config `json:"link,omitempty"` // nil: no eth0, only lo (--network none)
	// Files maps a path in the sandbox (/etc/hosts, ...) to its content.
	Files map[string][]byte `json:"files,omitempty"`
	Argv  []string          `json:"argv"`
	Env   []string          `json:"env"`
	// LoopbackTCP are ports the agent listens on, on 127.0.0.1 and ::1,
	// before the command starts (Sandbox.LoopbackListeners).
	LoopbackTCP []uint16 `json:"loopback_tcp,omitempty"`
}

// message is one packet on the supervisor-agent socket and on the exec
// socket: a tagged union, exactly one member set (Validate, checked on
// every receive).
type message struct {
	Mapped *struct{} `json:"mapped,omitempty"` // supervisor -> agent: id maps written
	Spec   *Spec     `json:"spec,omitempty"`   // supervisor -> agent, first
	Made   *made     `json:"made,omitempty"`   // agent -> supervisor: eth0 made, with its fd and the listeners'
	Start  *struct{} `json:"start,omitempty"`  // supervisor -> agent: run the command
	Failed *failure  `json:"failed,omitempty"` // agent -> supervisor, then it exits

	Exec        *execMsg    `json:"exec,omitempty"`         // -> agent, with 3 fds: run a command
	ExecStarted *execStatus `json:"exec_started,omitempty"` // <- agent: it runs
	ExecExited  *execStatus `json:"exec_exited,omitempty"`  // <- agent: it ended, or never started
	Signal      *signalMsg  `json:"signal,omitempty"`       // -> agent: signal an exec
	DialChannel *struct{}   `json:"dial_channel,omitempty"` // -> agent, with 1 fd: serve dials on it (dial_linux.go)

	AddLink   *tap.Config `json:"add_link,omitempty"`   // -> agent: make another interface
	LinkAdded *linkAdded  `json:"link_added,omitempty"` // <- agent, with its fd
}

// Validate checks that exactly one member is set.
func (m *message) Validate() error {
	return wire.ExactlyOne(m.Mapped != nil, m.Spec != nil, m.Made != nil, m.Start != nil, m.Failed != nil,
		m.Exec != nil, m.ExecStarted != nil, m.ExecExited != nil, m.Signal != nil, m.DialChannel != nil,
		m.AddLink != nil, m.LinkAdded != nil)
}

// made is the agent's answer to the spec.
type made struct {
	Link     *tap.Mode `json:"link,omitempty"` // with eth0's fd first; nil: lo only
	Warnings []string  `json:"warnings,omitempty"`
	// Listeners counts the descriptors after eth0's: Spec.LoopbackTCP's sockets.
	Listeners int `json:"listeners,omitempty"`
}

// failure is what stopped the agent, and the exit status it implies.
type failure struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

// recv reads one message of the union.
func recv(c *net.UnixConn) (message, []int, error) {
	var m message
	fds, err := wire.Recv(c, &m)
	return m, fds, err
}

// present is the value of a union member that carries nothing but itself.
var present = &struct{}{}

// linkAdded answers AddLink.
type linkAdded struct {
	Mode  tap.Mode `json:"mode,omitempty"`
	Error string   `json:"error,omitempty"`
}

// execMsg asks for one process in the running sandbox.
type execMsg struct {
	ID   uint64   `json:"id,omitempty"`
	Argv []string `json:"argv"`
	Env  []string `json:"env"` // null: the command's environment
	Dir  string   `json:"dir,omitempty"`
	Tty  bool     `json:"tty,omitempty"`
}

// execStatus reports an exec's start or end.
type execStatus struct {
	ID    uint64 `json:"id,omitempty"`
	Pid   int    `json:"pid,omitempty"`
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"` // it could not start (Code says why) or was refused
	// Stopped: it was killed because the sandbox ended (its command exited).
	Stopped bool `json:"stopped,omitempty"`
}

// signalMsg sends a signal to the exec with ID.
type signalMsg struct {
	ID     uint64 `json:"id,omitempty"`
	Signal int    `json:"signal"`
}

// ExecRequest is a command to run inside a running sandbox, as docker exec.
type ExecRequest struct {
	Argv []string
	// Env is the whole environment of the process, e.g. the client's own
	// (its PATH is also where Argv[0] is looked up). Nil means the
	// environment the sandbox's command was started with; an empty,
	// non-nil slice means none at all.
	Env []string
	// Tty makes the process a session leader whose controlling terminal
	// is its stdin, which must then be a terminal that is no other
	// session's controlling terminal (a fresh pty: ExecVia makes one).
	// Without Tty the process still gets a session of its own, so that
	// no terminal signal meant for the supervisor reaches it.
	Tty bool
	// Dir is the working directory; empty means the sandbox command's
	// initial one (the supervisor's at Start).
	Dir string
}

// ErrSandboxEnded: the sandbox ended while an exec'd process ran (its
// command exited, or its agent was killed), which killed the process.
// Exec and ExecVia return it with ExitKilled.
var ErrSandboxEnded = errors.New("the sandbox ended while the command ran")

// ErrNotRunning: Exec was called before Run or after the sandbox ended.
var ErrNotRunning = errors.New("the sandbox is not running")

// ExitKilled is the status of a process killed by SIGKILL (128+9), as
// Docker reports an exec killed with its container.
const ExitKilled = 137

// Error is a failure the agent reported, with the exit status it implies.
type Error struct {
	Msg  string
	Code int
}

func (e *Error) Error() string { return e.Msg }
