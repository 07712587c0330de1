// Command rtt is the bench's small-packet tool: TCP round trips, UDP packet
// rate and start-up probing. It is one static binary so that the same code
// runs on the host side, in a world namespace and inside every sandbox.
//
//	rtt serve -l :7001 [-u ADDR]    TCP: echo every read back (ping-pong server);
//	                                UDP on -u (default: the same address): count
//	                                datagrams, answer the client's control
//	                                requests (reset, stat)
//	rtt ping -c HOST:PORT [-t 3s] [-s 16] [-warmup 300ms]
//	                                one TCP connection, one message in flight;
//	                                prints "p50_us=… p99_us=… n=…"
//	rtt udp -c HOST:PORT [-t 3s] [-s 64]
//	                                send S-byte datagrams as fast as one socket
//	                                can for T; prints "rx_pps=… tx_pps=… sent=… received=…"
//	                                where received is the server's count
//	rtt probe [-timeout 20s] HOST:PORT
//	                                connect every 1 ms until it works; print the
//	                                epoch time in ns of the first success
//	rtt sink -l :5399               accept TCP connections and close them
//
// Every client stops by itself: no command runs longer than its -t/-timeout
// plus a few seconds.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Control datagrams start with a NUL byte, which data never does.
var (
	ctlReset = []byte("\x00CTL reset")
	ctlStat  = []byte("\x00CTL stat")
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rtt serve|ping|udp|probe|sink [flags] (see the package doc)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "ping":
		err = ping(os.Args[2:])
	case "udp":
		err = udp(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	case "sink":
		err = sink(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "rtt %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("l", ":7001", "TCP listen address")
	uaddr := fs.String("u", "", "UDP listen address (default: the TCP one)")
	fs.Parse(args)
	if *uaddr == "" {
		*uaddr = *addr
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", *uaddr)
	if err != nil {
		return err
	}
	// A larger receive buffer keeps bursts from being dropped at the server
	// socket rather than on the path under test (capped by rmem_max).
	pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	go serveUDP(pc)
	fmt.Fprintf(os.Stderr, "rtt serve: listening on tcp %s, udp %s\n", *addr, *uaddr)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func serveUDP(pc net.PacketConn) {
	var count atomic.Int64
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n > 0 && buf[0] == 0 {
			switch {
			case bytes.Equal(buf[:n], ctlReset):
				count.Store(0)
				pc.WriteTo([]byte("ok"), from)
			case bytes.Equal(buf[:n], ctlStat):
				pc.WriteTo([]byte("count "+strconv.FormatInt(count.Load(), 10)), from)
			}
			continue
		}
		count.Add(1)
	}
}

func ping(args []string) error {
	fs := flag.NewFlagSet("ping", flag.ExitOnError)
	addr := fs.String("c", "", "server HOST:PORT")
	dur := fs.Duration("t", 3*time.Second, "measuring time")
	size := fs.Int("s", 16, "message size in bytes")
	warm := fs.Duration("warmup", 300*time.Millisecond, "round trips in this first period are not counted")
	fs.Parse(args)
	c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	// Bound the whole run: a stalled path fails instead of hanging.
	c.SetDeadline(time.Now().Add(*warm + *dur + 5*time.Second))
	msg := bytes.Repeat([]byte("p"), *size)
	in := make([]byte, *size)
	start := time.Now()
	warmEnd, end := start.Add(*warm), start.Add(*warm+*dur)
	samples := make([]time.Duration, 0, 1<<16)
	for {
		t0 := time.Now()
		if t0.After(end) {
			break
		}
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return err
		}
		if t0.After(warmEnd) {
			samples = append(samples, time.Since(t0))
		}
	}
	if len(samples) == 0 {
		return fmt.Errorf("no round trip completed")
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	pct := func(p float64) float64 {
		i := int(p * float64(len(samples)-1))
		return float64(samples[i].Nanoseconds()) / 1000
	}
	fmt.Printf("p50_us=%.1f p99_us=%.1f n=%d\n", pct(0.50), pct(0.99), len(samples))
	return nil
}

func udp(args []string) error {
	fs := flag.NewFlagSet("udp", flag.ExitOnError)
	addr := fs.String("c", "", "server HOST:PORT")
	dur := fs.Duration("t", 3*time.Second, "sending time")
	size := fs.Int("s", 64, "datagram payload size in bytes")
	fs.Parse(args)
	c, err := net.Dial("udp", *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := control(c, ctlReset); err != nil {
		return fmt.Errorf("reset the server's count: %w", err)
	}
	msg := bytes.Repeat([]byte("u"), *size)
	var sent, errs int64
	start := time.Now()
	end := start.Add(*dur)
	for {
		// Check the clock every 256 datagrams: time.Now per packet costs
		// a noticeable share of the sender's budget.
		for i := 0; i < 256; i++ {
			if _, err := c.Write(msg); err != nil {
				errs++ // e.g. ECONNREFUSED from an ICMP error: keep sending
			} else {
				sent++
			}
		}
		if time.Now().After(end) {
			break
		}
	}
	elapsed := time.Since(start).Seconds()
	time.Sleep(500 * time.Millisecond) // let queued datagrams drain
	reply, err := control(c, ctlStat)
	if err != nil {
		return fmt.Errorf("read the server's count: %w", err)
	}
	got, err := strconv.ParseInt(strings.TrimPrefix(reply, "count "), 10, 64)
	if err != nil {
		return fmt.Errorf("bad count reply %q", reply)
	}
	fmt.Printf("rx_pps=%.0f tx_pps=%.0f sent=%d received=%d send_errors=%d\n",
		float64(got)/elapsed, float64(sent)/elapsed, sent, got, errs)
	return nil
}

// control sends a control datagram until the server answers (5 tries).
func control(c net.Conn, req []byte) (string, error) {
	buf := make([]byte, 256)
	var last error
	for try := 0; try < 5; try++ {
		if _, err := c.Write(req); err != nil {
			last = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				last = err
				break
			}
			// A stray reply (e.g. to an earlier try) is fine: take the
			// one that answers this request.
			s := string(buf[:n])
			if bytes.Equal(req, ctlReset) && s == "ok" || bytes.Equal(req, ctlStat) && strings.HasPrefix(s, "count ") {
				return s, nil
			}
		}
	}
	return "", fmt.Errorf("no answer after 5 tries: %v", last)
}

func probe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	timeout := fs.Duration("timeout", 20*time.Second, "give up after")
	fs.Parse(args)
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: rtt probe [-timeout D] HOST:PORT")
	}
	end := time.Now().Add(*timeout)
	var last error
	for time.Now().Before(end) {
		// A short per-try timeout: a SYN sent before the namespace's link
		// is fully up may be lost, and waiting for TCP's 1 s SYN
		// retransmission would measure that timer, not the network.
		c, err := net.DialTimeout("tcp", fs.Arg(0), 100*time.Millisecond)
		if err == nil {
			now := time.Now().UnixNano()
			c.Close()
			fmt.Println(now)
			return nil
		}
		last = err
		time.Sleep(time.Millisecond)
	}
	fmt.Println("FAIL")
	return fmt.Errorf("no connection within %s: %v", *timeout, last)
}

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	addr := fs.String("l", ":5399", "listen address")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}
