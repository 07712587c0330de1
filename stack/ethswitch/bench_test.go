package ethswitch

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// BenchmarkMemberToMember measures frames/s switched fd to fd between two
// socketpair members (one sender, one receiver, a window of frames in
// flight so that nothing is dropped).
func BenchmarkMemberToMember(b *testing.B) {
	for _, size := range []int{64, 1514, 9014, 65534} {
		b.Run(fmt.Sprint(size), func(b *testing.B) { benchMemberToMember(b, size, nil) })
	}
}

// BenchmarkMemberToMemberTapped is BenchmarkMemberToMember with a capture
// on: a tap that copies each frame, as a capture's does.
func BenchmarkMemberToMemberTapped(b *testing.B) {
	for _, size := range []int{64, 1514, 65534} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			var keep []byte
			benchMemberToMember(b, size, func(f []byte) { keep = append(keep[:0], f...) })
		})
	}
}

func benchMemberToMember(b *testing.B, size int, tap Tap) {
	s := newSwitch(b, Options{})
	if tap != nil {
		defer s.AddTap(tap)()
	}
	src, dst := addSockMember(b, s, 2), addSockMember(b, s, 3)
	frame := ethtest.UDPFrame(dst.MAC, src.MAC, src.IP, dst.IP, 1, 2, payload(size-42))
	window := min(256, max(2, (256<<10)/size))
	credits := make(chan struct{}, window)
	for range window {
		credits <- struct{}{}
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<17)
		for i := 0; i < b.N; i++ {
			n, err := unix.Read(dst.FD, buf)
			if err != nil || n != len(frame) {
				done <- fmt.Errorf("read %d, %v", n, err)
				return
			}
			credits <- struct{}{}
		}
		done <- nil
	}()
	stall := time.NewTimer(time.Hour)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		select {
		case <-credits:
		default:
			stall.Reset(5 * time.Second)
			select {
			case <-credits:
			case <-stall.C:
				b.Fatalf("stalled after %d frames: %+v", i, s.Stats())
			}
		}
		if _, err := unix.Write(src.FD, frame); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkTAPTCP measures one TCP stream through the switch between kernel
// members on TAPs (member to member, fd to fd) and between a member and a
// gVisor endpoint on the gateway, with and without a fifo qdisc.
func BenchmarkTAPTCP(b *testing.B) {
	needNS(b)
	for _, mtu := range []int{65520, 1500} {
		for _, path := range []string{"member-member", "member-gateway", "gateway-member"} {
			for _, qdisc := range []bool{true, false} {
				if path == "member-member" && !qdisc {
					continue
				}
				name := fmt.Sprintf("mtu%d/%s", mtu, path)
				if path != "member-member" {
					name += map[bool]string{true: "/fifo", false: "/noqdisc"}[qdisc]
				}
				b.Run(name, func(b *testing.B) { benchTCP(b, mtu, path, qdisc) })
			}
		}
	}
}

func benchTCP(b *testing.B, mtu int, path string, qdisc bool) {
	s := newSwitch(b, Options{MTU: uint32(mtu)})
	st := gatewayStack(b, s, qdisc)
	m2 := kernelMember(b, s, 2, mtu, true)
	m3 := kernelMember(b, s, 3, mtu, true)

	var ln net.Listener
	var err error
	var dial func() (net.Conn, error)
	switch path {
	case "member-member":
		m3.do(func() { ln, err = net.Listen("tcp", "10.9.0.3:5201") })
		dial = func() (c net.Conn, err error) {
			m2.do(func() { c, err = net.DialTimeout("tcp", "10.9.0.3:5201", 5*time.Second) })
			return
		}
	case "member-gateway":
		ln, err = gonet.ListenTCP(st, tcpip.FullAddress{NIC: gwNIC, Addr: tcpip.AddrFrom4(gwIP.As4()), Port: 5201}, ipv4.ProtocolNumber)
		dial = func() (c net.Conn, err error) {
			m2.do(func() { c, err = net.DialTimeout("tcp", gwIP.String()+":5201", 5*time.Second) })
			return
		}
	case "gateway-member":
		m2.do(func() { ln, err = net.Listen("tcp", "10.9.0.2:5201") })
		dial = func() (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return gonet.DialContextTCP(ctx, st, tcpip.FullAddress{NIC: gwNIC, Addr: tcpip.AddrFrom4(memberIP(2).As4()), Port: 5201}, ipv4.ProtocolNumber)
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const chunk = 1 << 20
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, chunk))
		got <- n
	}()
	c, err := dial()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	n := <-got
	b.StopTimer()
	c.Close()
	if n != int64(b.N)*chunk {
		b.Fatalf("received %d bytes, sent %d", n, int64(b.N)*chunk)
	}
	b.ReportMetric(float64(n)*8/1e9/b.Elapsed().Seconds(), "Gbit/s")
}
