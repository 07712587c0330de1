//go:build linux && (amd64 || arm64)

package seccomp

import (
	"fmt"
	"log/slog"
	"os"
	"slices"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/bpf"
)

//go:generate go test -run ^TestSysNames$ -update

// The lists' programs end a call off the list with a notification
// (listener_linux_amd64.go), which the listener answers with EPERM; where
// there is no listener (an older kernel, arm64), the same program with
// EPERM in place of each notification answers itself.

// notify and eperm are the two default actions, as a program returns them.
const (
	notify = uint32(linux.SECCOMP_RET_USER_NOTIF)
	eperm  = uint32(linux.SECCOMP_RET_ERRNO) | uint32(unix.EPERM)
)

// withoutListener is instrs with EPERM where they notify: only the
// default action notifies, so it is the program compiled with EPERM as
// its default (TestPrograms checks).
func withoutListener(instrs []bpf.Instruction) []bpf.Instruction {
	out := slices.Clone(instrs)
	for i, in := range out {
		if in.OpCode == bpf.Ret|bpf.K && in.K == notify {
			out[i].K = eperm
		}
	}
	return out
}

// reporter logs a denied call the first time the listener answers its
// number: a call made in a loop is one line, not a flood. Only the
// listener's goroutine calls it.
type reporter struct {
	log  *slog.Logger
	role Role
	self int
	seen map[int]bool
}

func newReporter(log *slog.Logger, r Role) *reporter {
	if log == nil {
		log = slog.Default()
	}
	return &reporter{log: log, role: r, self: os.Getpid(), seen: map[int]bool{}}
}

// denied is a call of number nr that the thread tid made: one of this
// process's, or of a process it started, which has its filter and no
// listener of its own (a supervisor's daemon: Filter.Install). tid 0 is
// a thread outside the listener's pid namespace.
func (r *reporter) denied(tid, nr int) {
	if r.seen[nr] {
		return
	}
	r.seen[nr] = true
	who := ""
	if tid == 0 || unix.Tgkill(r.self, tid, 0) != nil { // signal 0: is tid one of ours?
		who = fmt.Sprintf(" by another process (thread %d)", tid)
	}
	r.log.Warn(fmt.Sprintf("seccomp: denied %s (%d)%s, answered EPERM; this is a bug in netns-run's allowlist for the %s, please report it (%s)",
		sysName(nr), nr, who, r.role, r.turnOff()))
}

// stopped: the listener thread could read no more notifications and
// closed its descriptor.
func (r *reporter) stopped(err error) {
	r.log.Warn(fmt.Sprintf("seccomp: the listener of denied calls stopped (%v); they fail with ENOSYS from now on, unnamed (%s)", err, r.turnOff()))
}

func (r *reporter) turnOff() string {
	if r.role == Slirp {
		return "without --enable-seccomp there is none"
	}
	return Env + "=0 turns the filter off"
}

// sysName is the name of this architecture's system call nr.
func sysName(nr int) string {
	if name, ok := sysNames[nr]; ok {
		return name
	}
	return "an unknown call"
}
