//go:build linux

package seccomp

import (
	"golang.org/x/sys/unix"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// goThread is what the Go runtime passes clone(2) for a new thread (its
// os_linux.go cloneFlags; arm64 sets the thread pointer in the child).
const goThread = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_SYSVSEM | unix.CLONE_THREAD

// threadClone allows clone(flags, ...) for a thread of this process and
// nothing else: no new process, no namespace. The other arguments mean
// nothing without the flags that would use them.
func threadClone() gseccomp.SyscallRule {
	rule := gseccomp.Or{gseccomp.PerArg{eq(goThread)}}
	if cgoThread != 0 {
		rule = append(rule, gseccomp.PerArg{eq(cgoThread)})
	}
	return rule
}
