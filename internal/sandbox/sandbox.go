// Package sandbox is the supervisor's side of a sandbox: it starts a
// command in its own user, network, mount, uts and pid namespaces by
// re-executing this binary as the sandbox's agent (internal/agent, pid 1
// inside), which makes eth0 and hands its descriptor back, places the name
// files, mounts a fresh /proc and runs the command. From here the
// supervisor runs, waits for, signals and kills it, adds interfaces, opens
// dial channels, and runs commands inside (exec: the client, ExecVia, and
// the exec socket, ServeExec). The messages are internal/wire's. Nothing
// here knows about the host-side stack.
package sandbox

import (
	"errors"
)

// ExecRequest is a command to run inside a running sandbox, as docker exec.
type ExecRequest struct {
	Argv []string
	// Env is the whole environment of the process, e.g. the client's own
	// (its PATH is also where Argv[0] is looked up). Nil means the
	// environment the sandbox's command was started with; an empty,
	// non-nil slice means none at all.
	Env []string
	// EnvSet are KEY=VALUE set on top of Env (exec -e).
	EnvSet []string
	// Tty makes the process a session leader whose controlling terminal
	// is its stdin, which must then be a terminal that is no other
	// session's controlling terminal (a fresh pty: ExecVia makes one).
	// Without Tty the process still gets a session of its own, so that
	// no terminal signal meant for the supervisor reaches it.
	Tty bool
	// Dir is the working directory; empty means the sandbox command's
	// initial one (the supervisor's at Start).
	Dir string
	// User is USER[:GROUP] as exec -u: a name or number each, looked up
	// in the sandbox's /etc/passwd and /etc/group; empty: root.
	User string
}

// ErrSandboxEnded: the sandbox ended while an exec'd process ran (its
// command exited, or its agent was killed), which killed the process.
// Exec and ExecVia return it with wire.ExitKilled.
var ErrSandboxEnded = errors.New("the sandbox ended while the command ran")

// ErrNotRunning: Exec was called before Run or after the sandbox ended.
var ErrNotRunning = errors.New("the sandbox is not running")

// Error is a failure the agent reported, with the exit status it implies.
type Error struct {
	Msg  string
	Code int
}

func (e *Error) Error() string { return e.Msg }
