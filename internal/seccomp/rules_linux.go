//go:build linux && (amd64 || arm64)

package seccomp

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// The allowlists. Each role's is the base (below: what every netns-run
// process that hosts a network does once set up) and that role's own
// groups. They were derived from the code paths that run after each
// role's setup and checked against what the processes really call: strace
// -f under the e2e tests (docs/SLIRP4NETNS.md, Seccomp, for the slirp4netns
// mode with rootless Podman and RootlessKit; docs/ARCHITECTURE.md,
// Processes: Hardening, for the daemon and the supervisor), which also
// showed which calls still met the filter's EPERM. Setup is over when a
// filter goes on, so none of it is here: for the slirp4netns mode the TAP
// helper's exec, netlink, mounts, pivot_root, capset, the API socket's
// bind, reading resolv.conf; for the daemon its lock, its socket's bind
// and the first reading of the records; for the supervisor making the
// sandbox (the agent's exec with its namespaces, newuidmap, netlink for a
// kernel macvlan), binding the published ports, the exec and control
// sockets. No role may mount, ptrace, bpf, keyctl, unshare or setns, make
// a namespace, or use io_uring, perf events, userfaultfd or netlink.
//
// Arguments are checked where that is cheap and narrows what an attacker
// holding the process could do: no executable or file-backed memory,
// threads only (exact clone flags; the supervisor also the one process
// shape os/exec makes), signals to this process only (and the sandbox's
// agent), sockets of the families each role uses, the socket options Go's
// net package sets, the fcntl commands in use, private futexes. Paths are
// pointers, which a filter cannot read: the daemon and the supervisor may
// open files, as they must for their records and leases.
//
// The lists are compiled when netns-run is built (programs_linux.go): after
// changing one, run go generate ./internal/seccomp (TestPrograms fails
// until then).
var (
	anyValue = gseccomp.AnyValue{}
	all      = gseccomp.MatchAll{}
)

// hot are checked first: the busy relay's one call with arguments to
// check. The kernel's seccomp cache lets calls allowed whatever their
// arguments (read, write, readv, writev, ppoll, epoll_pwait, ...) skip
// the filter altogether.
var hot = []uintptr{unix.SYS_FUTEX}

func eq(v uintptr) gseccomp.ValueMatcher { return gseccomp.EqualTo(v) }

// fallbacks fail with ENOSYS, not EPERM: calls that Go's standard library
// (or glibc) tries first and replaces with others when the kernel lacks
// them. io.Copy to a kernel TCP socket from another kernel socket or a
// file tries sendfile (after splice, which finds pipe2 refused and steps
// aside), and takes EPERM as the copy's failure; ENOSYS makes it read and
// write instead. glibc's pthread_create (cgo builds) tries clone3, whose
// flags a filter cannot see, and falls back to clone.
func fallbacks() gseccomp.RuleSet {
	return gseccomp.RuleSet{
		Rules: gseccomp.MakeSyscallRules(map[uintptr]gseccomp.SyscallRule{
			unix.SYS_SENDFILE:        all,
			unix.SYS_COPY_FILE_RANGE: all,
			unix.SYS_CLONE3:          all,
		}),
		Action: gseccomp.ReturnError.Code(uint16(unix.ENOSYS)),
	}
}

// refusals fail with EPERM without naming the call (Role.Install): calls
// Go makes knowing they may be refused, and then does without. net's
// MPTCP probe (Go tries MPTCP first for a listener) makes an MPTCP
// socket and, refused, reads the kernel's version (uname); each listener
// then tries an MPTCP socket again and takes plain TCP.
func refusals() gseccomp.RuleSet {
	const stream = unix.SOCK_STREAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	return gseccomp.RuleSet{
		Rules: gseccomp.MakeSyscallRules(map[uintptr]gseccomp.SyscallRule{
			unix.SYS_SOCKET: gseccomp.Or{
				gseccomp.PerArg{eq(unix.AF_INET), eq(stream), eq(unix.IPPROTO_MPTCP)},
				gseccomp.PerArg{eq(unix.AF_INET6), eq(stream), eq(unix.IPPROTO_MPTCP)},
			},
			unix.SYS_UNAME: all,
		}),
		Action: gseccomp.ReturnError.Code(uint16(unix.EPERM)),
	}
}

// allowed is role r's allowlist for the process pid, which may also
// signal the processes also (the supervisor: its agent).
func allowed(r Role, pid int, also []int) gseccomp.SyscallRules {
	return allowedFor(r, pid, also, cgoBuild)
}

// allowedFor is allowed for a build with cgo or without.
func allowedFor(r Role, pid int, also []int, cgo bool) gseccomp.SyscallRules {
	rules := base(pid, cgo)
	switch r {
	case Slirp:
		slirp(rules)
	case Daemon:
		daemon(rules)
	case Supervisor:
		daemon(rules) // the daemon it may start inherits this filter
		supervisor(rules, also)
	}
	if cgo {
		glibcRules(rules)
	}
	return rules
}

// base is every role's list: the Go runtime, gVisor's link on a
// descriptor and its netstack, the host sockets of the NAT, of ping, of
// the DNS forwarder and of the forwards, for the process pid.
func base(pid int, cgo bool) gseccomp.SyscallRules {
	rules := gseccomp.MakeSyscallRules(map[uintptr]gseccomp.SyscallRule{
		// Memory: the Go runtime's heap, stacks and scavenger, and the
		// vDSO getrandom's state (MAP_DROPPABLE). Anonymous and never
		// executable; the runtime names its mappings with prctl
		// (GODEBUG decoratemappings).
		unix.SYS_MMAP: gseccomp.PerArg{
			anyValue,
			anyValue,
			gseccomp.BitsAllowlist(unix.PROT_READ | unix.PROT_WRITE),
			gseccomp.MaskedEqual(unix.MAP_ANONYMOUS, unix.MAP_ANONYMOUS),
		},
		unix.SYS_MUNMAP:  all,
		unix.SYS_MADVISE: all,
		unix.SYS_PRCTL:   gseccomp.PerArg{eq(unix.PR_SET_VMA), eq(unix.PR_SET_VMA_ANON_NAME)},

		// Threads, scheduling and time. clone is per architecture
		// (threadClone).
		unix.SYS_EXIT:       all, // a thread
		unix.SYS_EXIT_GROUP: all,
		unix.SYS_FUTEX: gseccomp.PerArg{
			anyValue,
			gseccomp.BitsAllowlist(linux.FUTEX_WAIT | linux.FUTEX_WAKE | linux.FUTEX_PRIVATE_FLAG),
		},
		unix.SYS_SCHED_YIELD:       all,
		unix.SYS_NANOSLEEP:         all,
		unix.SYS_SCHED_GETAFFINITY: all, // GOMAXPROCS follows the CPUs and the cgroup's limit
		unix.SYS_GETPID:            all,
		unix.SYS_GETTID:            all,
		unix.SYS_GETGID:            all, // named when ping_group_range refuses ICMP sockets
		unix.SYS_CLOCK_GETTIME:     all, // the vDSO's fallback, on clocks it cannot read
		unix.SYS_GETRANDOM:         all, // netstack's ISNs and ports, DNS ids
		unix.SYS_RESTART_SYSCALL:   all, // a sleep resumed after SIGSTOP and SIGCONT

		// Signals: Go's handlers, preemption (SIGURG) and raising a
		// fatal signal, to this process only.
		unix.SYS_RT_SIGACTION:   all,
		unix.SYS_RT_SIGPROCMASK: all,
		unix.SYS_RT_SIGRETURN:   all,
		unix.SYS_SIGALTSTACK:    all,
		unix.SYS_TGKILL:         gseccomp.PerArg{eq(uintptr(pid))},
		unix.SYS_KILL:           gseccomp.PerArg{eq(uintptr(pid))},

		// Descriptors: the TAP (readv, writev and ppoll: gVisor's
		// fdbased link), sockets, the ready and exit fds (os.NewFile
		// asks F_GETFL), the runtime's cgroup files (pread64), Go's
		// netpoller. No pipe or splice: the relay splices only between
		// two kernel sockets, and this process's forwards always have
		// gVisor on one side.
		unix.SYS_READ:        all,
		unix.SYS_WRITE:       all,
		unix.SYS_READV:       all,
		unix.SYS_WRITEV:      all,
		unix.SYS_PREAD64:     all,
		unix.SYS_CLOSE:       all,
		unix.SYS_PPOLL:       all,
		unix.SYS_EPOLL_PWAIT: all,
		unix.SYS_EPOLL_CTL:   all,
		unix.SYS_FCNTL: gseccomp.Or{
			gseccomp.PerArg{anyValue, eq(unix.F_GETFL)},
			// net.FilePacketConn of an ICMP socket: its own
			// descriptor, non-blocking.
			gseccomp.PerArg{anyValue, eq(unix.F_DUPFD_CLOEXEC)},
			gseccomp.PerArg{anyValue, eq(unix.F_SETFL)},
		},

		// Sockets: outbound TCP and UDP of the NAT and of the DNS
		// forwarder, ICMP echo sockets for ping past the gateway, the
		// forwards' listeners, the API socket's connections (accepted,
		// never made).
		unix.SYS_SOCKET:      inetSockets(),
		unix.SYS_BIND:        all,
		unix.SYS_LISTEN:      all,
		unix.SYS_CONNECT:     all,
		unix.SYS_ACCEPT4:     gseccomp.PerArg{anyValue, anyValue, anyValue, eq(unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC)},
		unix.SYS_GETSOCKNAME: all,
		unix.SYS_GETPEERNAME: all,
		unix.SYS_SETSOCKOPT:  socketOptions(),
		unix.SYS_GETSOCKOPT: gseccomp.Or{
			gseccomp.PerArg{anyValue, eq(unix.SOL_SOCKET), eq(unix.SO_ERROR)}, // a connect's outcome
			gseccomp.PerArg{anyValue, eq(unix.SOL_SOCKET), eq(unix.SO_TYPE)},  // net.FilePacketConn
		},
		unix.SYS_SHUTDOWN: all,
		unix.SYS_SENDTO:   all,
		unix.SYS_RECVFROM: all,

		// The listener thread's two requests (listener_linux_amd64.go),
		// on a descriptor the filter cannot know: it is made with the
		// filter.
		unix.SYS_IOCTL: gseccomp.Or{
			gseccomp.PerArg{anyValue, eq(unix.SECCOMP_IOCTL_NOTIF_RECV)},
			gseccomp.PerArg{anyValue, eq(unix.SECCOMP_IOCTL_NOTIF_SEND)},
		},
	})
	rules.Set(unix.SYS_CLONE, threadClone(cgo))
	return rules
}

// slirp adds the slirp4netns mode's one path: the API socket is removed on
// exit (through its directory's descriptor under --enable-sandbox). Files
// only, not directories.
func slirp(rules gseccomp.SyscallRules) {
	rules.Set(unix.SYS_UNLINKAT, gseccomp.PerArg{anyValue, anyValue, eq(0)})
}

// daemon adds what the network daemon does while it serves, beyond the
// base (its segments are gVisor and ethswitch on TAP descriptors: readv,
// writev, read, write, ppoll, as the base has them).
func daemon(rules gseccomp.SyscallRules) {
	// Its state: the leases and network definitions (internal/netstore:
	// the lock file and its flock, a temporary file made 0600, written,
	// fsynced and renamed into place, the directory fsynced), its socket
	// removed on exit. os.Remove tries rmdir after unlink, so unlinkat
	// takes both.
	for _, sysno := range []uintptr{
		unix.SYS_OPENAT, unix.SYS_FSTAT, unix.SYS_NEWFSTATAT, unix.SYS_UNLINKAT,
		unix.SYS_RENAMEAT, unix.SYS_FSYNC, unix.SYS_FLOCK, unix.SYS_FCHMOD,
	} {
		rules.Set(sysno, all)
	}

	// The member sessions (internal/wire): SOCK_SEQPACKET messages with
	// descriptors beside them (a member's TAP, its dial channel; the
	// dial channel's sockets made inside the sandbox), received
	// close-on-exec (MSG_CMSG_CLOEXEC); every connection's peer checked
	// (SO_PEERCRED against our effective uid; getuid too, which Go
	// calls without an error to see: refused, it would read as -1).
	rules.Set(unix.SYS_SENDMSG, all)
	rules.Set(unix.SYS_RECVMSG, all)
	rules.Set(unix.SYS_GETEUID, all)
	rules.Set(unix.SYS_GETUID, all)
	rules.Add(unix.SYS_GETSOCKOPT, gseccomp.PerArg{anyValue, eq(unix.SOL_SOCKET), eq(unix.SO_PEERCRED)})

	// The loopback fast path's relay between two kernel sockets
	// (forward/relay's event loop, whose epoll is made on first use,
	// and its splice through a pipe of 256 KiB).
	rules.Set(unix.SYS_EPOLL_CREATE1, all)
	rules.Set(unix.SYS_PIPE2, all)
	rules.Set(unix.SYS_SPLICE, all)
	rules.Add(unix.SYS_FCNTL, gseccomp.PerArg{anyValue, eq(unix.F_SETPIPE_SZ)})

	// Its log (internal/daemon's rotatingLog): a log rotated at its size
	// cap, opened anew and put on its stderr, where a panic would go too.
	rules.Set(unix.SYS_DUP3, gseccomp.PerArg{anyValue, eq(uintptr(unix.Stderr)), eq(0)})

	// The metrics endpoint counts the open descriptors by listing
	// /proc/self/fd. Its library's package initialisation asks statfs
	// whether /sys/fs/cgroup is cgroup v2: in a daemon that a filtered
	// supervisor starts, that runs under the supervisor's filter.
	rules.Set(unix.SYS_STATFS, all)
	rules.Set(unix.SYS_GETDENTS64, all)
}

// supervisor adds what a sandbox's supervisor does once its command runs,
// beyond the daemon's list; it may also signal also (its agent).
func supervisor(rules gseccomp.SyscallRules, also []int) {
	// Its records (internal/registry): the directory is the lock, made
	// again should it be gone; network disconnect's lookup lists it
	// (getdents64, on the daemon's list).
	rules.Set(unix.SYS_MKDIRAT, all)

	// Its unix sockets of its own: a connection to the daemon (port
	// add and rm, network connect, a rejoin) and a dial channel's
	// socketpair for the daemon or its own fast path.
	rules.Add(unix.SYS_SOCKET, gseccomp.PerArg{eq(unix.AF_UNIX), eq(unix.SOCK_SEQPACKET | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC), eq(0)})
	rules.Set(unix.SYS_SOCKETPAIR, gseccomp.PerArg{eq(unix.AF_UNIX), eq(unix.SOCK_SEQPACKET | unix.SOCK_CLOEXEC), eq(0)})

	// --network private's packet link (--link-mode packet): gVisor's
	// fdbased writes frames to an AF_PACKET socket in batches.
	rules.Set(unix.SYS_SENDMMSG, all)

	// The agent (and a daemon it started): waited for through its pidfd
	// (waitid P_PIDFD) and signalled through it (pidfd_send_signal:
	// only children have pidfds here, pidfd_open is refused), or by
	// pid where the kernel has no pidfds (wait4, kill to also only).
	rules.Set(unix.SYS_WAITID, all)
	rules.Set(unix.SYS_WAIT4, all)
	rules.Set(unix.SYS_PIDFD_SEND_SIGNAL, all)
	for _, p := range also {
		rules.Add(unix.SYS_KILL, gseccomp.PerArg{eq(uintptr(p))})
	}
	// The terminal: the signal forwarder asks whether it is in the
	// foreground of its terminal (a terminal's ^C reached the command
	// already); run -t's pty follows the size of the user's terminal
	// (TIOCGWINSZ there, TIOCSWINSZ on the pty) and gives it its
	// settings back at the end (TCSETS). Not TIOCSTI: nothing types
	// into a terminal.
	rules.Add(unix.SYS_IOCTL, gseccomp.Or{
		gseccomp.PerArg{anyValue, eq(unix.TIOCGPGRP)},
		gseccomp.PerArg{anyValue, eq(unix.TIOCGWINSZ)},
		gseccomp.PerArg{anyValue, eq(unix.TIOCSWINSZ)},
		gseccomp.PerArg{anyValue, eq(unix.TCSETS)},
	})
	archSupervisor(rules)

	// Starting the network daemon when none answers (a rejoin after the
	// daemon died, network connect): os/exec's fork, the one process
	// shape allowed (CLONE_VM|CLONE_VFORK, the parent waits until the
	// child has executed), its exec error pipe, the child's steps
	// before execve (its own session, its descriptors, the file limit
	// Go raised put back) and os.Executable. The daemon inherits this
	// filter, with no_new_privs (no set-id or file capabilities take
	// effect): it can call nothing this list refuses, and adds its own
	// filter on top (seccomp, prctl PR_SET_NO_NEW_PRIVS). Before that
	// it starts a Go runtime (the TLS on amd64, its standard
	// descriptors checked with F_GETFD, the file limit) and sets up (the
	// netpoller's epoll, which the daemon's list has, and eventfd, the
	// records, its socket made 0600).
	rules.Add(unix.SYS_CLONE, processClone())
	rules.Set(unix.SYS_EXECVE, all)
	rules.Set(unix.SYS_SETSID, all)
	rules.Add(unix.SYS_DUP3, all)
	rules.Set(unix.SYS_READLINKAT, all)
	rules.Set(unix.SYS_PRLIMIT64, gseccomp.PerArg{anyValue, eq(unix.RLIMIT_NOFILE)})
	rules.Set(unix.SYS_EVENTFD2, all)
	rules.Set(unix.SYS_SECCOMP, gseccomp.PerArg{eq(linux.SECCOMP_SET_MODE_FILTER)})
	rules.Add(unix.SYS_PRCTL, gseccomp.PerArg{eq(unix.PR_SET_NO_NEW_PRIVS), eq(1)})
	rules.Set(unix.SYS_FCHMODAT, all)
	rules.Add(unix.SYS_FCNTL, gseccomp.PerArg{anyValue, eq(unix.F_GETFD)})
	// Go's runtime in the daemon preempts its goroutines with SIGURG
	// to its own threads, whose pid this filter cannot know.
	rules.Add(unix.SYS_TGKILL, gseccomp.PerArg{anyValue, anyValue, eq(uintptr(unix.SIGURG))})
}

// inetSockets allows the IPv4 and IPv6 TCP and UDP sockets Go's net
// package makes (the protocol is 0, or IPPROTO_TCP in its probe of the
// host's IPv6 support), and the unprivileged ICMP echo sockets that
// golang.org/x/net/icmp opens for ping (SOCK_DGRAM, no flags): no
// AF_UNIX, AF_NETLINK, AF_PACKET or raw socket, and no MPTCP (Go tries it
// first for a listener, then takes plain TCP, as slirp4netns's are).
func inetSockets() gseccomp.Or {
	const flags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	var or gseccomp.Or
	for _, s := range []struct{ family, typ, proto uintptr }{
		{unix.AF_INET, unix.SOCK_STREAM | flags, 0},
		{unix.AF_INET, unix.SOCK_STREAM | flags, unix.IPPROTO_TCP},
		{unix.AF_INET, unix.SOCK_DGRAM | flags, 0},
		{unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP},
		{unix.AF_INET6, unix.SOCK_STREAM | flags, 0},
		{unix.AF_INET6, unix.SOCK_STREAM | flags, unix.IPPROTO_TCP},
		{unix.AF_INET6, unix.SOCK_DGRAM | flags, 0},
		{unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6},
	} {
		or = append(or, gseccomp.PerArg{eq(s.family), eq(s.typ), eq(s.proto)})
	}
	return or
}

// socketOptions are the options Go's net package sets on the sockets it
// makes, accepts and listens on.
func socketOptions() gseccomp.Or {
	var or gseccomp.Or
	for _, o := range []struct{ level, name uintptr }{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR},   // listeners
		{unix.SOL_SOCKET, unix.SO_BROADCAST},   // UDP sockets
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE},   // TCP connections
		{unix.IPPROTO_TCP, unix.TCP_NODELAY},   // TCP connections
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},  // TCP keepalive
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, // TCP keepalive
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT},   // TCP keepalive
		{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY},  // IPv6 sockets: dual stack or not
	} {
		or = append(or, gseccomp.PerArg{anyValue, eq(o.level), eq(o.name)})
	}
	return or
}
