// Command probe is the small static helper that e2e tests run inside
// sandboxes (and on the host side): servers that tell who connected, clients
// with bounded timeouts, and readers of the sandbox's own view of the system.
//
//	probe serve-tcp PORT...           listen on 0.0.0.0:PORT (or on ADDR:PORT, [V6ADDR]:PORT),
//	                                  print "ready"; per connection write "from IP:PORT\n",
//	                                  then echo until EOF
//	probe serve-udp PORT...           the same addresses; print "ready"; answer "from IP:PORT PAYLOAD"
//	probe tcp [-timeout D] ADDR [SEND]  dial, send, half-close, print what is read until EOF;
//	                                  "local IP:PORT" (its own address) goes to stderr
//	probe tcp -bytes N [-timeout D] ADDR  send N bytes to an echo server (whoami), check the echo,
//	                                  print the banner line and "echoed N bytes"
//	probe udp [-timeout D] ADDR SEND    send (again every 500ms), print the first reply;
//	                                  "local IP:PORT" goes to stderr
//	probe resolve [-timeout D] NAME     Go's own resolver (/etc/resolv.conf, /etc/hosts): one address a line
//	probe unix [-timeout D] PATH REQ   a slirp4netns API call: send REQ and a newline on the unix
//	                                  stream socket PATH, shut the write side, print the reply
//	probe cat FILE                    print a file
//	probe hostname                    print the host name
//	probe id                          print "uid=N gid=N"
//	probe ns                          print this process's namespaces (user, net, mnt, uts, pid)
//	probe exit N                      exit with status N
//	probe sleep D                     sleep for a Go duration
//	probe wait-signal [-timeout D]    print "ready"; on SIGTERM/SIGINT/SIGHUP print "got SIGNAME", exit 0
//	probe ifinfo [IFACE]              eth0's addresses, MAC, MTU, flags; lo's state; the default gateway
//	probe rawsend [-count N] [-burst B] IFACE HEXFRAME...  write each Ethernet frame (hex, ':' allowed; HEX/N pads to N bytes) N times, pausing 2 ms every B
//	                                  through a packet socket; print "sent N frames"
//	probe log-udp PORT                print "ready", then "from IP:PORT PAYLOAD" for every datagram; no answer
//	probe hold-tcp [-n N] [-for D] ADDR  open N connections at once, print "held K of N" (those that got
//	                                  the server's first line), keep them open for D
//
// Errors go to stderr as "probe: ..." with exit status 1 (2 for bad usage).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/e2e/internal/whoami"
)

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe SUBCOMMAND [ARG...] (see the package doc)")
		os.Exit(2)
	}
	err := run(os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: %s: %v\n", os.Args[1], err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(cmd string, args []string) error {
	switch cmd {
	case "serve-tcp":
		return serveTCP(args)
	case "serve-udp":
		return serveUDP(args)
	case "tcp":
		return clientTCP(args)
	case "udp":
		return clientUDP(args)
	case "resolve":
		return resolve(args)
	case "unix":
		return unixRequest(args)
	case "cat":
		if len(args) != 1 {
			return usageError{"want FILE"}
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(os.Stdout, f)
		return err
	case "hostname":
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		fmt.Println(h)
		return nil
	case "id":
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		return nil
	case "ns":
		for _, n := range []string{"user", "net", "mnt", "uts", "pid"} {
			l, err := os.Readlink("/proc/self/ns/" + n)
			if err != nil {
				return err
			}
			fmt.Printf("%s %s\n", n, l)
		}
		return nil
	case "exit":
		if len(args) != 1 {
			return usageError{"want N"}
		}
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return usageError{err.Error()}
		}
		os.Exit(n)
	case "sleep":
		if len(args) != 1 {
			return usageError{"want DURATION"}
		}
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return usageError{err.Error()}
		}
		time.Sleep(d)
		return nil
	case "wait-signal":
		return waitSignal(args)
	case "ifinfo":
		return ifinfo(args)
	case "rawsend":
		return rawSend(args)
	case "log-udp":
		return logUDP(args)
	case "hold-tcp":
		return holdTCP(args)
	}
	return usageError{"unknown subcommand"}
}

func ready() {
	// Stdout may be a pipe: one unbuffered write is seen at once.
	_, _ = os.Stdout.WriteString("ready\n")
}

// listenAddr is where a server listens: a bare port means IPv4's every
// address, as the tests assumed first; an address with a port is taken
// as it is (IPv6 included).
type listenAddr struct{ family, addr string }

func ports(args []string) ([]listenAddr, error) {
	if len(args) == 0 {
		return nil, usageError{"want PORT..."}
	}
	var ls []listenAddr
	for _, a := range args {
		if ap, err := netip.ParseAddrPort(a); err == nil && ap.Port() != 0 {
			ls = append(ls, listenAddr{"", a})
			continue
		}
		if p, err := strconv.Atoi(a); err != nil || p < 1 || p > 65535 {
			return nil, usageError{fmt.Sprintf("bad port %q", a)}
		}
		ls = append(ls, listenAddr{"4", "0.0.0.0:" + a})
	}
	return ls, nil
}

func serveTCP(args []string) error {
	ps, err := ports(args)
	if err != nil {
		return err
	}
	errc := make(chan error, len(ps))
	for _, p := range ps {
		l, err := net.Listen("tcp"+p.family, p.addr)
		if err != nil {
			return err
		}
		go func() { errc <- whoami.ServeTCP(l) }()
	}
	ready()
	return <-errc
}

func serveUDP(args []string) error {
	ps, err := ports(args)
	if err != nil {
		return err
	}
	errc := make(chan error, len(ps))
	for _, p := range ps {
		pc, err := net.ListenPacket("udp"+p.family, p.addr)
		if err != nil {
			return err
		}
		go func() { errc <- whoami.ServeUDP(pc) }()
	}
	ready()
	return <-errc
}

func timeoutFlags(name string, args []string, def time.Duration) (time.Duration, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	t := fs.Duration("timeout", def, "overall timeout")
	if err := fs.Parse(args); err != nil {
		return 0, nil, usageError{err.Error()}
	}
	return *t, fs.Args(), nil
}

func clientTCP(args []string) error {
	fs := flag.NewFlagSet("tcp", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", 5*time.Second, "overall timeout")
	bulk := fs.Int("bytes", 0, "send this many bytes and check that they come back")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	rest := fs.Args()
	if len(rest) < 1 || len(rest) > 2 || (*bulk > 0 && len(rest) != 1) {
		return usageError{"want ADDR [SEND] or -bytes N ADDR"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", rest[0])
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(os.Stderr, "local %s\n", c.LocalAddr())
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if *bulk > 0 {
		return bulkEcho(c.(*net.TCPConn), *bulk)
	}
	if len(rest) == 2 {
		if _, err := io.WriteString(c, rest[1]); err != nil {
			return err
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_, err = io.Copy(os.Stdout, c)
	return err
}

func bulkEcho(c *net.TCPConn, n int) error {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		_ = c.CloseWrite()
		werr <- err
	}()
	r := bufio.NewReader(c)
	banner, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the banner: %w", err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading the echo after %d of %d bytes: %w", len(got), n, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	if len(got) != n {
		return fmt.Errorf("echo has %d bytes, sent %d", len(got), n)
	}
	for i := range got {
		if got[i] != data[i] {
			return fmt.Errorf("echo differs at byte %d", i)
		}
	}
	fmt.Print(banner)
	fmt.Printf("echoed %d bytes\n", n)
	return nil
}

func clientUDP(args []string) error {
	timeout, rest, err := timeoutFlags("udp", args, 5*time.Second)
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return usageError{"want ADDR SEND"}
	}
	deadline := time.Now().Add(timeout)
	c, err := net.DialTimeout("udp", rest[0], timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(os.Stderr, "local %s\n", c.LocalAddr())
	buf := make([]byte, 65536)
	var last error
	for time.Now().Before(deadline) {
		if _, err := io.WriteString(c, rest[1]); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		next := time.Now().Add(500 * time.Millisecond)
		if next.After(deadline) {
			next = deadline
		}
		_ = c.SetReadDeadline(next)
		n, err := c.Read(buf)
		if err == nil {
			fmt.Printf("%s\n", buf[:n])
			return nil
		}
		last = err
		if errors.Is(err, syscall.ECONNREFUSED) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return fmt.Errorf("no reply within %v (last error: %v)", timeout, last)
}

func resolve(args []string) error {
	timeout, rest, err := timeoutFlags("resolve", args, 10*time.Second)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError{"want NAME"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r := &net.Resolver{PreferGo: true}
	addrs, err := r.LookupHost(ctx, rest[0])
	if err != nil {
		return err
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		fmt.Println(a)
	}
	return nil
}

func unixRequest(args []string) error {
	timeout, rest, err := timeoutFlags("unix", args, 10*time.Second)
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return usageError{"want PATH REQUEST"}
	}
	c, err := net.DialTimeout("unix", rest[0], timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, rest[1]+"\n"); err != nil {
		return err
	}
	c.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n", b)
	return nil
}

func waitSignal(args []string) error {
	timeout, rest, err := timeoutFlags("wait-signal", args, 2*time.Minute)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return usageError{"no arguments"}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	ready()
	select {
	case s := <-ch:
		name := strings.ToUpper(unixSignalName(s.(syscall.Signal)))
		_, _ = os.Stdout.WriteString("got " + name + "\n")
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("no signal within %v", timeout)
	}
}

func unixSignalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return fmt.Sprintf("SIG%d", int(s))
}

// ifinfo prints, one fact a line:
//
//	addr 10.0.2.100/24     (every address of the interface, IPv4 first)
//	mac 02:42:0a:00:02:64
//	mtu 65520
//	up true
//	lo up|down
//	gateway 10.0.2.2       (from /proc/net/route; "gateway none" without a default route)
func ifinfo(args []string) error {
	name := "eth0"
	if len(args) == 1 {
		name = args[0]
	} else if len(args) > 1 {
		return usageError{"want [IFACE]"}
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return err
	}
	var v4, v6 []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ipn.IP.To4() != nil {
			v4 = append(v4, ipn.String())
		} else {
			v6 = append(v6, ipn.String())
		}
	}
	for _, a := range append(v4, v6...) {
		fmt.Printf("addr %s\n", a)
	}
	fmt.Printf("mac %s\n", ifc.HardwareAddr)
	fmt.Printf("mtu %d\n", ifc.MTU)
	fmt.Printf("up %t\n", ifc.Flags&net.FlagUp != 0)
	if lo, err := net.InterfaceByName("lo"); err == nil {
		state := "down"
		if lo.Flags&net.FlagUp != 0 {
			state = "up"
		}
		fmt.Printf("lo %s\n", state)
	}
	gw, err := defaultGateway()
	if err != nil {
		return err
	}
	fmt.Printf("gateway %s\n", gw)
	return nil
}

func defaultGateway() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 || fl[0] == "Iface" {
			continue
		}
		if fl[1] != "00000000" || fl[7] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(fl[2])
		if err != nil || len(b) != 4 {
			return "", fmt.Errorf("bad gateway %q in /proc/net/route", fl[2])
		}
		var ip [4]byte
		binary.LittleEndian.PutUint32(ip[:], binary.BigEndian.Uint32(b))
		return net.IP(ip[:]).String(), nil
	}
	return "none", sc.Err()
}
