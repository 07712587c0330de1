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
// nothing else: no new process, no namespace (glibc's thread too when
// cgo). The other arguments mean nothing without the flags that would use
// them.
func threadClone(cgo bool) gseccomp.SyscallRule {
	rule := gseccomp.Or{gseccomp.PerArg{eq(goThread)}}
	if cgo {
		rule = append(rule, gseccomp.PerArg{eq(glibcThread)})
	}
	return rule
}

// processClone allows os/exec's fork: clone(flags, 0, &pidfd, ...) with
// CLONE_VM|CLONE_VFORK, with or without a pidfd, SIGCHLD at exit (its
// forkAndExecInChild1).
func processClone() gseccomp.SyscallRule {
	const vfork = unix.CLONE_VM | unix.CLONE_VFORK | uintptr(unix.SIGCHLD)
	return gseccomp.Or{
		gseccomp.PerArg{eq(vfork), eq(0)},
		gseccomp.PerArg{eq(vfork | unix.CLONE_PIDFD), eq(0)},
	}
}

// archSupervisor: getpgrp, which arm64 has as getpgid(0), for the signal
// forwarder's foreground check.
func archSupervisor(rules gseccomp.SyscallRules) {
	rules.Set(unix.SYS_GETPGID, gseccomp.PerArg{eq(0)})
}
