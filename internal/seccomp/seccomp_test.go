//go:build linux && (amd64 || arm64)

package seccomp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/netns-run/netns-run/forward/relay"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// childEnv switches a re-exec of the test binary to filteredChild, with
// the role named by its value.
const childEnv = "NETNS_RUN_SECCOMP_TEST_CHILD"

var roles = []Role{Slirp, Daemon, Supervisor}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "stacked" {
		os.Exit(stackedChild())
	}
	if os.Getenv(childEnv) == "denied" {
		os.Exit(deniedChild())
	}
	if name := os.Getenv(childEnv); name != "" {
		for _, r := range roles {
			if r.String() == name {
				os.Exit(filteredChild(r))
			}
		}
		fmt.Printf("FAIL no role %q\n", name)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestBuild(t *testing.T) {
	for _, r := range roles {
		instrs, err := build(r, os.Getpid(), []int{1})
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		t.Logf("%s: %d syscalls allowed, %d BPF instructions", r, allowed(r, os.Getpid(), []int{1}).Size(), len(instrs))
		if len(instrs) > unix.BPF_MAXINSNS {
			t.Errorf("%s: %d instructions: more than the kernel takes (%d)", r, len(instrs), unix.BPF_MAXINSNS)
		}
	}
}

// TestSupervisorCoversDaemon: a daemon that a supervisor starts (a rejoin
// after the daemon died) runs under the supervisor's filter too, so every
// call the daemon's list allows must be on the supervisor's.
func TestSupervisorCoversDaemon(t *testing.T) {
	d, s := allowed(Daemon, 1, nil), allowed(Supervisor, 1, nil)
	for sysno := uintptr(0); sysno < 1024; sysno++ {
		if d.Has(sysno) && !s.Has(sysno) {
			t.Errorf("syscall %d is on the daemon's list, not on the supervisor's", sysno)
		}
	}
}

func TestEnv(t *testing.T) {
	for v, want := range map[string]bool{"": false, "1": false, "on": false, "0": true, "off": true, "False": true, " no ": true} {
		if got := isOff(v); got != want {
			t.Errorf("%s=%q: off %v, want %v", Env, v, got, want)
		}
	}
}

// TestInstall runs filteredChild for each role in a re-exec of the test
// binary: with the filter on it still does that process's work (see
// filteredChild), what it must not do fails with EPERM, and every one of
// its threads, made before the filter or after, is in seccomp filter mode
// with no_new_privs.
func TestInstall(t *testing.T) {
	for _, r := range roles {
		t.Run(r.String(), func(t *testing.T) { testInstall(t, r) })
	}
}

func testInstall(t *testing.T, r Role) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+r.String(), "TMPDIR="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if line == "waiting" {
			break
		}
	}
	// The child holds its threads while it waits: each must show mode 2.
	threads, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range threads {
		b, err := os.ReadFile(st)
		if err != nil {
			t.Errorf("thread %s: %v", st, err)
			continue
		}
		if !bytes.Contains(b, []byte("\nSeccomp:\t2\n")) || !bytes.Contains(b, []byte("\nNoNewPrivs:\t1\n")) {
			t.Errorf("thread %s is not in seccomp filter mode with no_new_privs:\n%s", st, b)
		}
	}
	if len(threads) < 9 {
		t.Errorf("the child has %d threads, want at least 9", len(threads))
	}
	t.Logf("%d threads, all filtered", len(threads))
	stdin.Close()
	io.Copy(&out, stdout)
	err = cmd.Wait()
	t.Logf("child:\n%s\nits log:\n%s", out.String(), stderr.String())
	if err != nil {
		t.Fatalf("child: %v\nstderr:\n%s", err, stderr.String())
	}
	if strings.Contains(out.String(), "FAIL") || !strings.Contains(out.String(), "done") {
		t.Errorf("child failed:\n%s\nstderr:\n%s", out.String(), stderr.String())
	}
}

// filteredChild installs r's filter, then (a) does what the process does
// after setup: for every role TCP relayed between the kernel's loopback
// and a gVisor netstack, TCP and UDP on the loopback, IPv4 and IPv6, ICMP
// echo, goroutines on new threads, timers, signals to itself, the garbage
// collector giving memory back; for the daemon and the supervisor also
// their state files, descriptors passed over a unix socket with the
// peer's credentials, the fast path's splice relay, the metrics' process
// collector, the log's dup3 onto stderr; for the supervisor its own unix
// sockets, waiting for and signalling a child started before the filter
// (as its agent), and os/exec's fork and exec; and (b) tries what the
// filter refuses: mount, unshare, setns, ptrace, AF_NETLINK
// sockets, unix stream sockets, executable memory, a signal to another
// process, and per role execve, fork, open, unix sockets, ioctl. It reports a line per
// check ("ok ...", "FAIL ...") and the exit status says whether all
// passed.
func filteredChild(r Role) int {
	failed := false
	check := func(what string, err error) {
		if err != nil {
			failed = true
			fmt.Printf("FAIL %s: %v\n", what, err)
			return
		}
		fmt.Printf("ok %s\n", what)
	}
	refused := func(what string, err error) {
		if !errors.Is(err, unix.EPERM) {
			failed = true
			fmt.Printf("FAIL %s: want EPERM, got %v\n", what, err)
			return
		}
		fmt.Printf("ok %s refused: %v\n", what, err)
	}
	// passed: the filter let the call through; the kernel may still say
	// no, but not with the filter's EPERM.
	passed := func(what string, err error) {
		if errors.Is(err, unix.EPERM) {
			failed = true
			fmt.Printf("FAIL %s: refused: %v\n", what, err)
			return
		}
		fmt.Printf("ok %s passed the filter: %v\n", what, err)
	}

	// Threads made before the filter, each parked on its own.
	park := make(chan struct{})
	var parked sync.WaitGroup
	for range 8 {
		parked.Add(1)
		go func() {
			runtime.LockOSThread()
			parked.Done()
			<-park
		}()
	}
	parked.Wait()
	ppid := os.Getppid() // getppid is refused too

	// Setup, as the roles have it before their filter: a session's
	// socket (the daemon's accepted connections, the supervisor's agent
	// socketpair) and a child (the supervisor's agent).
	var session [2]int
	var child *exec.Cmd
	var also []int
	state := filepath.Join(os.Getenv("TMPDIR"), "state")
	if r != Slirp {
		if err := os.MkdirAll(state, 0o700); err != nil {
			fmt.Printf("FAIL state dir: %v\n", err)
			return 1
		}
		var err error
		if session, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0); err != nil {
			fmt.Printf("FAIL socketpair: %v\n", err)
			return 1
		}
	}
	if r == Supervisor {
		child = exec.Command("sleep", "60")
		if err := child.Start(); err != nil {
			fmt.Printf("FAIL start a child: %v\n", err)
			return 1
		}
		also = []int{child.Process.Pid}
	}

	if err := r.Install(childLog(), also...); err != nil {
		fmt.Printf("FAIL install: %v\n", err)
		return 1
	}
	fmt.Println("ok installed")

	// (a) Work.
	check("tcp4 relay to gVisor", relayTCP("tcp4", "127.0.0.1:0"))
	check("tcp6 relay to gVisor", relayTCP("tcp6", "[::1]:0"))
	check("tcp on every address (IPv6 probe)", relayTCP("tcp", ":0"))
	check("tcp between kernel sockets (io.Copy)", echoTCP())
	check("udp4", echoUDP("udp4", "127.0.0.1:0"))
	check("udp6", echoUDP("udp6", "[::1]:0"))
	check("threads", newThreads(16))
	check("timers", timers())
	check("gc", collect())
	check("signal to self", signalSelf())
	check("icmp echo socket", echoICMP())
	if r != Slirp {
		check("state files", stateFiles(state))
		check("descriptors over a unix socket, peer credentials", passFD(session))
		check("splice relay between kernel sockets", spliceTCP())
		check("getpeername and SO_ERROR (the dialer's connect check)", peerName())
		check("the metrics' process collector", processMetrics())
		// dup3 onto itself: EINVAL, past the filter.
		passed("dup3 onto stderr (the log's rotation)", unix.Dup3(unix.Stderr, unix.Stderr, 0))
	}
	if r == Supervisor {
		check("records", records(os.Getenv("TMPDIR")))
		check("unix sockets of its own", unixSockets(os.Getenv("TMPDIR")))
		check("kill(2) the process it may signal", unix.Kill(also[0], 0))
		check("signal the child through its pidfd", child.Process.Signal(unix.SIGTERM))
		err := child.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = nil // killed by SIGTERM, as asked
		}
		check("wait for the child", err)
		// os/exec's fork and exec run; the kernel finds no file.
		passed("fork and exec", exec.Command("/nonexistent-netns-run-seccomp-test").Run())
		if cgoBuild {
			fmt.Println("   (a static build starts a Go program under the filter; this one is not)")
		} else {
			check("a Go program started under the filter (the next daemon) puts its own on", startStacked())
		}
		_, err = unix.IoctlGetInt(0, unix.TIOCGPGRP) // stdin is a pipe: ENOTTY
		passed("ioctl TIOCGPGRP", err)
		_, err = unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
		passed("ioctl TIOCGWINSZ", err)
		_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, 0)
		refused("ioctl TIOCSTI", errnoErr(e))
	}

	// (b) Refusals, each of a call that would succeed unfiltered, or fail
	// otherwise than EPERM (also as root), and do no harm if it ran.
	if r != Supervisor {
		refused("execve", unix.Exec("/bin/true", []string{"true"}, nil))
		cmd := exec.Command("/bin/true")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr, os.Stderr // no open of /dev/null
		refused("fork", cmd.Run())
		refused("unix seqpacket socket", socket(unix.AF_UNIX, unix.SOCK_SEQPACKET))
		_, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
		refused("ioctl", err)
	}
	if r == Slirp {
		_, err := os.Open("/etc/passwd")
		refused("open", err)
	}
	if r == Daemon {
		refused("mkdir", unix.Mkdir(filepath.Join(state, "d"), 0o700))
		refused("getdents", records(state))
		refused("dup3 onto another descriptor than stderr", unix.Dup3(unix.Stderr, 100, 0))
	}
	refused("mount", unix.Mount("tmpfs", "/nonexistent-netns-run-seccomp-test", "tmpfs", 0, "")) // ENOENT
	refused("unshare", unix.Unshare(unix.CLONE_NEWUSER))                                         // EINVAL: threads
	refused("setns", unix.Setns(0, unix.CLONE_NEWNET))                                           // EINVAL: a pipe
	refused("ptrace", ptraceAttach(1<<30))                                                       // ESRCH
	refused("netlink socket", socket(unix.AF_NETLINK, unix.SOCK_RAW))
	refused("linkat", unix.Linkat(unix.AT_FDCWD, "/proc/self/exe", unix.AT_FDCWD, filepath.Join(os.Getenv("TMPDIR"), "linked"), 0))
	refused("unix stream socket", socket(unix.AF_UNIX, unix.SOCK_STREAM))
	refused("stream socketpair", socketpair())
	_, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_ANON|unix.MAP_PRIVATE)
	refused("executable memory", err)
	refused("signal to another process", unix.Kill(ppid, 0))

	// The parent now checks every thread; stdin's end lets us go.
	fmt.Println("waiting")
	io.Copy(io.Discard, os.Stdin)
	close(park)
	if failed {
		return 1
	}
	fmt.Println("done")
	return 0
}

// relayTCP sends 8 MiB from a kernel TCP client through a relay
// (forward/relay, as a forward does) to an echo server in a gVisor
// netstack and checks it all comes back: the path of the slirp4netns
// mode's forwards, netstack's goroutines and timers included.
func relayTCP(network, addr string) error {
	s, proto, inner, err := netstack(network)
	if err != nil {
		return err
	}
	defer s.Close()
	echo, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: 1, Addr: inner, Port: 80}, proto)
	if err != nil {
		return err
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	front, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	defer front.Close()
	go func() {
		c, err := front.Accept()
		if err != nil {
			return
		}
		up, err := gonet.DialTCP(s, tcpip.FullAddress{NIC: 1, Addr: inner, Port: 80}, proto)
		if err != nil {
			c.Close()
			return
		}
		relay.TCP(c, up)
	}()
	c, err := net.Dial(network, front.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	data := bytes.Repeat([]byte("0123456789abcdef"), 512<<10)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("%d bytes came back of %d, or different ones", len(got), len(data))
	}
	return nil
}

// netstack is a gVisor stack on a loopback link, with the loopback
// address of network's family.
func netstack(network string) (*gstack.Stack, tcpip.NetworkProtocolNumber, tcpip.Address, error) {
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol},
	})
	proto, a, subnet := ipv4.ProtocolNumber, tcpip.AddrFrom4([4]byte{127, 0, 0, 1}), header.IPv4EmptySubnet
	if strings.HasSuffix(network, "6") {
		proto, a, subnet = ipv6.ProtocolNumber, tcpip.AddrFrom16([16]byte{15: 1}), header.IPv6EmptySubnet
	}
	if terr := s.CreateNIC(1, loopback.New()); terr != nil {
		s.Close()
		return nil, 0, tcpip.Address{}, fmt.Errorf("netstack NIC: %v", terr)
	}
	pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: a.WithPrefix()}
	if terr := s.AddProtocolAddress(1, pa, gstack.AddressProperties{}); terr != nil {
		s.Close()
		return nil, 0, tcpip.Address{}, fmt.Errorf("netstack address: %v", terr)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: 1}})
	return s, proto, a, nil
}

// echoServer echoes one TCP connection on a loopback port, with io.Copy.
func echoServer() (net.Listener, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	return ln, nil
}

// echoTCP copies between two kernel sockets with io.Copy: Go's splice
// finds no pipe (pipe2 is refused), its sendfile gets ENOSYS, and it
// copies instead.
func echoTCP() error {
	ln, err := echoServer()
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	data := bytes.Repeat([]byte("x"), 1<<20)
	go func() { c.Write(data); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if len(got) != len(data) {
		return fmt.Errorf("%d bytes came back of %d", len(got), len(data))
	}
	return nil
}

func echoUDP(network, addr string) error {
	srv, err := net.ListenPacket(network, addr)
	if err != nil {
		return err
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo(buf[:n], from)
		}
	}()
	c, err := net.Dial(network, srv.LocalAddr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "ping" {
		return fmt.Errorf("got %q", buf[:n])
	}
	return nil
}

// echoICMP opens an unprivileged ICMP echo socket as golang.org/x/net/icmp
// does for the gateway's ping forwarding (socket, bind, then
// net.FilePacketConn: dup, F_SETFL, SO_TYPE) and pings 127.0.0.1. Where
// net.ipv4.ping_group_range leaves our group out, the kernel's EACCES
// still shows that the filter let the socket call through.
func echoICMP() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	if errors.Is(err, unix.EACCES) {
		fmt.Printf("   (ICMP sockets: %v, by net.ipv4.ping_group_range)\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	if err := unix.Bind(s, &unix.SockaddrInet4{}); err != nil {
		unix.Close(s)
		return err
	}
	f := os.NewFile(uintptr(s), "icmp")
	c, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	echo := []byte{8, 0, 0, 0, 0, 0, 0, 1, 'h', 'i'} // type 8: echo request; the kernel sets id and checksum
	if _, err := c.WriteTo(echo, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		return err
	}
	if n < 8 || buf[0] != 0 {
		return fmt.Errorf("not an echo reply: % x", buf[:n])
	}
	return nil
}

// newThreads makes the runtime start n more threads (clone) and end them
// (a goroutine locked to its thread exits with it).
func newThreads(n int) error {
	var wg sync.WaitGroup
	tids := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			tids <- unix.Gettid()
			time.Sleep(10 * time.Millisecond)
		}()
	}
	wg.Wait()
	close(tids)
	seen := map[int]bool{}
	for tid := range tids {
		seen[tid] = true
	}
	if len(seen) != n {
		return fmt.Errorf("%d goroutines ran on %d threads", n, len(seen))
	}
	return nil
}

func timers() error {
	start := time.Now()
	t := time.NewTimer(20 * time.Millisecond)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := 0; i < 5; i++ {
		<-tick.C
	}
	<-t.C
	time.Sleep(time.Millisecond)
	if d := time.Since(start); d < 20*time.Millisecond {
		return fmt.Errorf("timers fired after %v", d)
	}
	return nil
}

// collect grows the heap, collects it and gives the memory back to the
// kernel (mmap, madvise, munmap).
func collect() error {
	var keep [][]byte
	for i := 0; i < 64; i++ {
		keep = append(keep, make([]byte, 1<<20))
	}
	runtime.KeepAlive(keep)
	keep = nil
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.NumGC == 0 {
		return errors.New("no collection ran")
	}
	return nil
}

func signalSelf() error {
	c := make(chan os.Signal, 1)
	signal.Notify(c, unix.SIGUSR1)
	defer signal.Stop(c)
	if err := unix.Kill(os.Getpid(), unix.SIGUSR1); err != nil {
		return err
	}
	select {
	case <-c:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("SIGUSR1 did not arrive")
	}
}

func ptraceAttach(pid int) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_ATTACH, uintptr(pid), 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func socket(family, typ int) error {
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// BenchmarkBuild is what compiling a role's filter costs the process that
// installs it.
func BenchmarkBuild(b *testing.B) {
	for _, r := range []Role{Slirp, Daemon, Supervisor} {
		b.Run(r.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := build(r, os.Getpid(), []int{1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func socketpair() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
	}
	return err
}

// stateFiles does what internal/netstore does with its files, in dir
// (made before the filter, as the daemon's data dir is): a lock file and
// its flock, a temporary file made 0600, written, synced and renamed into
// place, the directory synced, read back, and the files removed again.
func stateFiles(dir string) error {
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".leases.*.tmp")
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.WriteString(`{"version":1}`); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	f.Close()
	path := filepath.Join(dir, "leases.json")
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		return err
	}
	d.Close()
	if b, err := os.ReadFile(path); err != nil || string(b) != `{"version":1}` {
		return fmt.Errorf("read back %q: %v", b, err)
	}
	if _, err := os.Lstat(path); err != nil {
		return err
	}
	// The version the next write replaces, kept by a rename.
	if err := os.Rename(path, path+".bak"); err != nil {
		return err
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	for _, p := range []string{path + ".bak", lock.Name()} {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// records does what internal/registry does on top, and a daemon sets up
// under the supervisor's filter: a directory made 0700, listed, a file
// in it made 0600 by its path, and the directory removed with it.
func records(tmp string) error {
	dir := filepath.Join(tmp, "sandboxes")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, "a.json")
	if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
		return fmt.Errorf("list: %d entries, %v", len(ents), err)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return os.Remove(dir)
}

// passFD sends a descriptor beside a message over a SOCK_SEQPACKET pair,
// as internal/wire does (a member's TAP, a dial channel), receives it
// close-on-exec (MSG_CMSG_CLOEXEC, as ReadMsgUnix does) and checks the
// peer's credentials.
func passFD(pair [2]int) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if err := unix.Sendmsg(pair[0], []byte("attach"), unix.UnixRights(p[1]), nil, 0); err != nil {
		return err
	}
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(pair[1], buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("control messages: %d, %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("rights: %v, %v", fds, err)
	}
	defer unix.Close(fds[0])
	if _, err := unix.Write(fds[0], []byte("x")); err != nil {
		return err
	}
	if string(buf[:n]) != "attach" {
		return fmt.Errorf("got %q", buf[:n])
	}
	cred, err := unix.GetsockoptUcred(pair[1], unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return err
	}
	if int(cred.Uid) != os.Geteuid() || os.Getuid() != os.Geteuid() {
		return fmt.Errorf("peer uid %d", cred.Uid)
	}
	return nil
}

// spliceTCP relays 8 MiB between two kernel TCP sockets with
// forward/relay, which splices them through a pipe (the loopback fast
// path of published ports, -T), and checks it came back whole.
func spliceTCP() error {
	back, err := echoServer()
	if err != nil {
		return err
	}
	defer back.Close()
	front, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer front.Close()
	go func() {
		c, err := front.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp4", back.Addr().String())
		if err != nil {
			c.Close()
			return
		}
		relay.TCP(c, up)
	}()
	c, err := net.Dial("tcp4", front.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	data := bytes.Repeat([]byte("0123456789abcdef"), 512<<10)
	go func() { c.Write(data); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("%d bytes came back of %d, or different ones", len(got), len(data))
	}
	if relay.IdlePipes() == 0 {
		return errors.New("the relay kept no pipe: it did not splice")
	}
	return nil
}

// unixSockets listens on, dials and accepts a SOCK_SEQPACKET unix socket
// (the supervisor's connections to the daemon, the daemon's listener it
// may start) and makes a dial channel's socketpair.
func unixSockets(tmp string) error {
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(tmp, "s.sock"), Net: "unixpacket"})
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.DialUnix("unixpacket", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		return err
	}
	defer c.Close()
	a, err := ln.AcceptUnix()
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	buf := make([]byte, 8)
	if n, err := a.Read(buf); err != nil || string(buf[:n]) != "hello" {
		return fmt.Errorf("got %q, %v", buf[:n], err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	unix.Close(fds[0])
	unix.Close(fds[1])
	return nil
}

// peerName asks a connected TCP socket's peer and error as the fast
// path's dialer does: getpeername(2) itself, not x/sys's (which asks the
// socket's protocol too, a call the filter refuses).
func peerName() error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	if err := rc.Control(func(fd uintptr) {
		var sa unix.RawSockaddrAny
		n := uint32(unix.SizeofSockaddrAny)
		if _, _, errno := unix.Syscall(unix.SYS_GETPEERNAME, fd, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n))); errno != 0 {
			perr = errno
			return
		}
		_, perr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	}); err != nil {
		return err
	}
	return perr
}

// processMetrics writes what the metrics endpoint writes of the process
// itself, reading /proc/self as a scrape does, and wants its RSS and
// descriptor counts.
func processMetrics() error {
	var b bytes.Buffer
	metrics.WriteProcessMetrics(&b)
	metrics.WriteFDMetrics(&b)
	for _, want := range []string{"process_resident_memory_bytes", "process_open_fds", "process_max_fds"} {
		m := regexp.MustCompile(`(?m)^` + want + ` ([0-9.e+]+)$`).FindStringSubmatch(b.String())
		if m == nil || m[1] == "0" {
			return fmt.Errorf("no %s above 0 in\n%s", want, b.String())
		}
	}
	return nil
}

// startStacked runs the test binary under the supervisor's filter, as a
// supervisor starts the next daemon (stackedChild), and checks it ran.
func startStacked() error {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=stacked")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "stacked: 2 filters") {
		return fmt.Errorf("got %q", out)
	}
	return nil
}

// stackedChild is a Go program started by a filtered supervisor, as the
// next daemon: its runtime starts under the supervisor's filter, and it
// puts the daemon's on top.
func stackedChild() int {
	if err := Daemon.Install(childLog()); err != nil {
		fmt.Printf("install: %v\n", err)
		return 1
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Printf("status: %v\n", err)
		return 1
	}
	// Its filter has no listener (its parent's has the chain's one) and
	// answers EPERM itself.
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, 0, 0, 0); e != unix.EPERM {
		fmt.Printf("getcpu: want EPERM, got %v\n", e)
		return 1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Seccomp_filters:" {
			fmt.Printf("stacked: %s filters\n", f[1])
		}
	}
	return 0
}

// childLog is a filtered child's log: its denied calls, on stderr.
func childLog() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }

// TestDenied: a call off every list (getcpu) fails with EPERM, made
// with RawSyscall, which keeps the only P while it waits for its answer
// (GOMAXPROCS=1) and with garbage collections (stops of the world)
// running meanwhile, and with Syscall; the log names it once.
func TestDenied(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=denied", "GOMAXPROCS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v (killed after a minute: hung)\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("child:\n%s\nits log:\n%s", stdout.String(), stderr.String())
	if !strings.Contains(stdout.String(), "done") {
		t.Fatalf("child did not finish:\n%s", stdout.String())
	}
	if runtime.GOARCH != "amd64" {
		return // no listener: nothing is named (listener_linux_arm64.go)
	}
	want := fmt.Sprintf("seccomp: denied getcpu (%d), answered EPERM;", unix.SYS_GETCPU)
	if n := strings.Count(stderr.String(), want); n != 1 {
		t.Errorf("the log names getcpu %d times, want once (%q)", n, want)
	}
	if strings.Count(stderr.String(), "seccomp: denied") != 1 {
		t.Errorf("the log names other calls too")
	}
}

// deniedChild installs the daemon's filter, makes getcpu (off every
// list) 2000 times raw while the garbage collector runs, once more
// through Syscall, and checks each got EPERM; then waits for the log's
// line (the listener's goroutine writes it).
func deniedChild() int {
	if err := Daemon.Install(childLog()); err != nil {
		fmt.Printf("FAIL install: %v\n", err)
		return 1
	}
	stop := make(chan struct{})
	go func() {
		var keep [][]byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			if keep = append(keep, make([]byte, 64<<10)); len(keep) > 64 {
				keep = nil
			}
		}
	}()
	var gc runtime.MemStats
	start := time.Now()
	for i := range 2000 {
		if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, 0, 0, 0); e != unix.EPERM {
			fmt.Printf("FAIL getcpu %d: want EPERM, got %v\n", i, e)
			return 1
		}
	}
	took := time.Since(start)
	close(stop)
	if _, _, e := unix.Syscall(unix.SYS_GETCPU, 0, 0, 0); e != unix.EPERM {
		fmt.Printf("FAIL getcpu through Syscall: want EPERM, got %v\n", e)
		return 1
	}
	runtime.ReadMemStats(&gc)
	fmt.Printf("ok 2001 calls refused, %v each, %d collections meanwhile\n", took/2000, gc.NumGC)
	time.Sleep(200 * time.Millisecond) // the log's line
	fmt.Println("done")
	return 0
}
