//go:build linux

package seccomp

import (
	"golang.org/x/sys/unix"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// goThread is what the Go runtime passes clone(2) for a new thread (its
// os_linux.go cloneFlags, and CLONE_SETTLS, which its amd64 clone adds).
const goThread = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_SYSVSEM | unix.CLONE_THREAD | unix.CLONE_SETTLS

// threadClone allows clone(flags, stack, parent_tid, child_tid, tls) for
// a thread of this process and nothing else: no new process, no
// namespace.
func threadClone() gseccomp.SyscallRule {
	rule := gseccomp.Or{gseccomp.PerArg{eq(goThread), anyValue, eq(0), eq(0), anyValue}}
	if cgoThread != 0 {
		rule = append(rule, gseccomp.PerArg{eq(cgoThread)})
	}
	return rule
}
