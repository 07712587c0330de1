package runner

import (
	"github.com/netns-run/netns-run/internal/sandbox"
	"github.com/netns-run/netns-run/internal/seccomp"
)

// harden puts the supervisor's syscall filter on (docs/ARCHITECTURE.md,
// Processes: Hardening), unless NETNS_RUN_SECCOMP=0. runAndWait calls it
// once the command runs: the agent and newuidmap have been executed, the
// ports bound, the exec and control sockets made; the agent and the
// command, started before, are not filtered. It runs beside the
// command's start: the program was compiled when netns-run was built, and
// putting it on takes microseconds (where it must be compiled at run
// time, a cgo build or an architecture without a precompiled program,
// some ms of CPU, spent beside the command rather than before it).
func (r *run) harden(sb *sandbox.Sandbox) {
	if err := seccomp.Default(seccomp.Supervisor, sb.Pid()).Install(r.log); err != nil {
		r.log.Warn("no syscall filter", "err", err)
	}
}
