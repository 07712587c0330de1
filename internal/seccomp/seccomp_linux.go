//go:build linux && (amd64 || arm64)

// Package seccomp confines a running netns-run process to the system
// calls it needs once its setup is over, with one allowlist per Role: the
// slirp4netns mode under --enable-seccomp (docs/SLIRP4NETNS.md, Seccomp),
// and by default the network daemon and each sandbox's supervisor
// (docs/ARCHITECTURE.md, Processes: Hardening). Every list is a shared
// base (the Go runtime, gVisor's netstack on a TAP or packet descriptor,
// the host sockets of the outbound NAT, of ping, of the forwards and of
// the DNS forwarder, signals and exit) and what that role does on top.
// The filter is an allowlist, built with gVisor's pkg/seccomp, and
// applies to every thread of the process.
package seccomp

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/bpf"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// Install confines every thread of the process, present and future, to
// r's allowlist (allowed, with its argument checks); it also sets
// no_new_privs, which an unprivileged filter needs. It cannot be undone,
// and processes started later (the supervisor's daemon) inherit it.
// Signals may go to this process and to the processes also (the
// supervisor passes its agent's pid: kill where the kernel has no pidfds).
//
// A call off the list fails with EPERM instead of running: a rare call
// the list missed then degrades one operation (an error the code already
// handles, as for a refused socket) instead of killing the network of
// every container behind the process, and it is what slirp4netns's own
// filter answers. log gets one line naming it, the first time a call of
// that number is denied (the listener: listener_linux_amd64.go; a kernel
// older than 5.7, or arm64, answers EPERM without naming it). A few calls
// that Go tries before a fallback answer ENOSYS instead, so that the
// fallback is taken (fallbacks), and a few it makes knowing they may be
// refused answer EPERM unnamed (refusals). A call made through another
// architecture's ABI (int 0x80 on amd64), which would dodge the numbers
// checked, kills the process.
//
// SECCOMP_FILTER_FLAG_TSYNC puts the filter on all threads at once, the
// kernel copying no_new_privs along; a thread the kernel cannot
// synchronize makes Install fail rather than leave that thread
// unfiltered. Threads started later inherit it.
func (r Role) Install(log *slog.Logger, also ...int) error {
	return r.compile(also).Install(log)
}

// Filter is a role's filter for this process: the program compiled when
// netns-run was built (programs_linux.go), with this process's pids put
// in, or else compiled in the background from the moment Default (or
// Role.Install) asked for it (gVisor's compiler takes some milliseconds
// of CPU and a few MB of garbage, which a process then spends while it
// sets up). Install puts it on.
type Filter struct {
	role   Role
	dflt   bool // made by Default: errors say how to silence them
	done   chan struct{}
	instrs []bpf.Instruction
	err    error
}

func (r Role) compile(also []int) *Filter {
	f := &Filter{role: r, done: make(chan struct{})}
	pid := unix.Getpid()
	if instrs, ok := precompiled(r, pid, also); ok {
		f.instrs = instrs
		close(f.done)
		return f
	}
	go func() {
		defer close(f.done)
		f.instrs, f.err = build(r, pid, also)
	}()
	return f
}

// Install waits until f is compiled and installs it (see Role.Install);
// log gets the denied calls. A nil Filter (Default's when Env turns the
// default filters off) installs nothing.
func (f *Filter) Install(log *slog.Logger) error {
	if f == nil {
		return nil
	}
	<-f.done
	err := f.err
	if err == nil {
		err = warm()
	}
	if err == nil {
		err = install(f.instrs, newReporter(log, f.role))
		if errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("install the syscall filter: %w (a kernel without seccomp filters?)", err)
		} else if err != nil {
			err = fmt.Errorf("install the syscall filter: %w", err)
		}
	}
	if err != nil && f.dflt {
		err = fmt.Errorf("%w; the %s goes on without it (%s=0 silences this)", err, f.role, Env)
	}
	return err
}

// warm makes what the process would otherwise make on first use, with
// calls the filter refuses: the runtime's netpoller (epoll_create1,
// eventfd2), made for the first pollable descriptor, and the local time
// zone (opening /etc/localtime), loaded for the first local time a log
// line prints.
func warm() error {
	r, w, err := os.Pipe() // pollable: starts the netpoller
	if err != nil {
		return fmt.Errorf("install the syscall filter: %w", err)
	}
	r.Close()
	w.Close()
	time.Now().Zone()
	return nil
}

// build compiles r's filter for the process pid (signals may only be sent
// to it and to also).
func build(r Role, pid int, also []int) ([]bpf.Instruction, error) {
	return buildFor(r, pid, also, cgoBuild)
}

// buildFor is build for a build with cgo or without.
func buildFor(r Role, pid int, also []int, cgo bool) ([]bpf.Instruction, error) {
	p := filterProgram(r, pid, also, cgo)
	instrs, _, err := p.Build()
	if err != nil {
		return nil, fmt.Errorf("build the syscall filter: %w", err)
	}
	return instrs, nil
}

// filterProgram is r's filter before it is compiled: a call off the list
// notifies the listener (withoutListener makes it EPERM).
func filterProgram(r Role, pid int, also []int, cgo bool) gseccomp.Program {
	return gseccomp.Program{
		RuleSets: []gseccomp.RuleSet{
			fallbacks(),
			refusals(),
			{Rules: allowedFor(r, pid, also, cgo), Action: gseccomp.Allow},
		},
		Options: gseccomp.ProgramOptions{
			DefaultAction: gseccomp.UserNotify,
			BadArchAction: gseccomp.KillProcess,
			HotSyscalls:   hot,
		},
	}
}
