package seccomp

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Role is the netns-run process a filter is for. Each role's allowlist is
// the shared base (the Go runtime, gVisor's netstack on a descriptor, the
// host sockets of the NAT, ping, DNS and the forwards) and what that
// process does on top (rules_linux.go).
type Role int

const (
	// Slirp is the slirp4netns mode (internal/slirp) under
	// --enable-seccomp: the base and the removal of its API socket.
	Slirp Role = iota
	// Daemon is the per-user network daemon (internal/daemon) once it
	// listens: the base, its state files, unix sockets with descriptors,
	// the fast path's splice relay.
	Daemon
	// Supervisor is a sandbox's `netns-run run` process (internal/runner)
	// once the command runs: the daemon's list (it may start the next
	// daemon, which inherits this filter), its own sockets and files,
	// waiting for and signalling the agent, and starting a daemon.
	Supervisor
)

func (r Role) String() string {
	switch r {
	case Slirp:
		return "slirp4netns"
	case Daemon:
		return "daemon"
	case Supervisor:
		return "supervisor"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Env is the environment variable that turns the default filters (Daemon
// and Supervisor: Default) off when it is 0, off, false or no, for
// debugging. slirp4netns's --enable-seccomp is an explicit request and
// does not look at it.
const Env = "NETNS_RUN_SECCOMP"

// off is Env as the process started with: read once.
var off = isOff(os.Getenv(Env))

func isOff(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "off", "false", "no":
		return true
	}
	return false
}

// Default makes r's filter for this process (see Filter), to be installed
// once the process is set up, unless Env turns the default filters off: then it returns nil, whose Install does nothing. also are
// processes the filter lets this one signal (Role.Install). Install's
// error is for the caller to warn about, once: a default filter that
// cannot go on (a kernel without seccomp filters) never stops netns-run.
func Default(r Role, also ...int) *Filter {
	if off {
		return nil
	}
	f := r.compile(also)
	f.dflt = true
	return f
}

// Install confines the process to the Slirp role's allowlist (see
// Role.Install): slirp4netns's --enable-seccomp. log gets the denied calls.
func Install(log *slog.Logger) error { return Slirp.Install(log) }
