//go:build linux && (amd64 || arm64)

package seccomp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

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

// childEnv switches a re-exec of the test binary to filteredChild.
const childEnv = "NETNS_RUN_SECCOMP_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(filteredChild())
	}
	os.Exit(m.Run())
}

func TestBuild(t *testing.T) {
	instrs, err := build(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d syscalls allowed, %d BPF instructions", allowed(os.Getpid()).Size(), len(instrs))
	if len(instrs) > unix.BPF_MAXINSNS {
		t.Errorf("%d instructions: more than the kernel takes (%d)", len(instrs), unix.BPF_MAXINSNS)
	}
}

// TestInstall runs filteredChild in a re-exec of the test binary: with the
// filter on it still does a relay's work (see filteredChild), what it must
// not do fails with EPERM, and every one of its threads, made before the
// filter or after, is in seccomp filter mode.
func TestInstall(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
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
		if !bytes.Contains(b, []byte("\nSeccomp:\t2\n")) {
			t.Errorf("thread %s is not in seccomp filter mode:\n%s", st, b)
		}
	}
	if len(threads) < 9 {
		t.Errorf("the child has %d threads, want at least 9", len(threads))
	}
	t.Logf("%d threads, all filtered", len(threads))
	stdin.Close()
	io.Copy(&out, stdout)
	err = cmd.Wait()
	t.Logf("child:\n%s", out.String())
	if err != nil {
		t.Fatalf("child: %v\nstderr:\n%s", err, stderr.String())
	}
	if strings.Contains(out.String(), "FAIL") || !strings.Contains(out.String(), "done") {
		t.Errorf("child failed:\n%s\nstderr:\n%s", out.String(), stderr.String())
	}
}

// filteredChild installs the filter, then (a) does what the process does
// after setup: TCP relayed between the kernel's loopback and a gVisor
// netstack, TCP and UDP on the loopback, IPv4 and IPv6, goroutines on new threads, timers, signals to itself, the garbage
// collector giving memory back; and (b) tries what the filter refuses:
// execve, fork, mount, unshare, setns, ptrace, opening a file, AF_UNIX and
// AF_NETLINK sockets, executable memory, a signal to another process. It reports a
// line per check ("ok ...", "FAIL ...") and the exit status says whether
// all passed.
func filteredChild() int {
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

	if err := Install(); err != nil {
		fmt.Printf("FAIL install: %v\n", err)
		return 1
	}
	fmt.Println("ok installed")

	// (a) Work.
	check("tcp4 relay to gVisor", relayTCP("tcp4", "127.0.0.1:0"))
	check("tcp6 relay to gVisor", relayTCP("tcp6", "[::1]:0"))
	check("tcp on every address (IPv6 probe)", relayTCP("tcp", ":0"))
	check("tcp between kernel sockets (no splice or sendfile: copied)", echoTCP())
	check("udp4", echoUDP("udp4", "127.0.0.1:0"))
	check("udp6", echoUDP("udp6", "[::1]:0"))
	check("threads", newThreads(16))
	check("timers", timers())
	check("gc", collect())
	check("signal to self", signalSelf())
	check("icmp echo socket", echoICMP())

	// (b) Refusals, each of a call that would succeed unfiltered, or fail
	// otherwise than EPERM (also as root), and do no harm if it ran.
	refused("execve", unix.Exec("/bin/true", []string{"true"}, nil))
	cmd := exec.Command("/bin/true")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr, os.Stderr // no open of /dev/null
	refused("fork", cmd.Run())
	refused("mount", unix.Mount("tmpfs", "/nonexistent-netns-run-seccomp-test", "tmpfs", 0, "")) // ENOENT
	refused("unshare", unix.Unshare(unix.CLONE_NEWUSER))                                         // EINVAL: threads
	refused("setns", unix.Setns(0, unix.CLONE_NEWNET))                                           // EINVAL: a pipe
	refused("ptrace", ptraceAttach(1<<30))                                                       // ESRCH
	_, err := os.Open("/etc/passwd")
	refused("open", err)
	refused("unix socket", socket(unix.AF_UNIX, unix.SOCK_STREAM))
	refused("netlink socket", socket(unix.AF_NETLINK, unix.SOCK_RAW))
	_, err = unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_ANON|unix.MAP_PRIVATE)
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

// echoTCP copies between two kernel sockets with io.Copy: Go's splice
// finds no pipe (pipe2 is refused), its sendfile gets ENOSYS, and it
// copies instead.
func echoTCP() error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
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
