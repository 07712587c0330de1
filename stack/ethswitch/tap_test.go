package ethswitch

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// kernelMember is a sandbox stand-in: a network namespace whose eth0 is a
// TAP attached to the switch, with member i's MAC and (if addr) address.
func kernelMember(t testing.TB, s *Switch, i, mtu int, addr bool) *netns {
	t.Helper()
	ns := newNetns(t)
	fd := ns.tap(t, "eth0", memberMAC(i).String(), mtu)
	if addr {
		ns.mustRun(t, "ip", "addr", "add", memberIP(i).String()+"/24", "dev", "eth0")
		ns.mustRun(t, "ip", "route", "add", "default", "via", gwIP.String())
	}
	if err := s.AddPort(Member{MAC: memberMAC(i), IP: memberIP(i), FD: fd}); err != nil {
		t.Fatal(err)
	}
	return ns
}

func (ns *netns) ping(args ...string) error {
	out, err := ns.run("busybox", append([]string{"ping", "-q", "-i", "0.2"}, args...)...)
	if err != nil {
		return fmt.Errorf("ping %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// noSpoofDrops fails if the switch dropped honest kernel traffic.
func noSpoofDrops(t testing.TB, s *Switch) {
	t.Helper()
	st := s.Stats()
	for _, r := range []string{DropSrcMAC, DropSrcIP, DropARPSpoof, DropIPv6Src, DropMalformed, DropRunt, DropOversize, DropWrite} {
		if st.Drops[r] != 0 {
			t.Errorf("the switch dropped kernel traffic: %v", st.Drops)
			return
		}
	}
	t.Logf("stats: %+v", st)
}

func TestTAPKernelMembers(t *testing.T) {
	needNS(t)
	for _, mtu := range []int{65520, 1500} {
		t.Run(fmt.Sprint("mtu", mtu), func(t *testing.T) {
			s := newSwitch(t, Options{MTU: uint32(mtu)})
			st := gatewayStack(t, s, true)
			m2 := kernelMember(t, s, 2, mtu, true)
			m3 := kernelMember(t, s, 3, mtu, true)

			for _, c := range []struct {
				ns   *netns
				args []string
			}{
				{m2, []string{"-c", "2", "-W", "3", gwIP.String()}},                          // gVisor: ARP + ICMP
				{m2, []string{"-c", "2", "-W", "3", memberIP(3).String()}},                   // member to member
				{m3, []string{"-c", "2", "-W", "3", "-s", fmt.Sprint(mtu - 28), "10.9.0.2"}}, // full-size frames
				{m3, []string{"-c", "2", "-W", "3", "-s", fmt.Sprint(mtu - 28), gwIP.String()}},
			} {
				if err := c.ns.ping(c.args...); err != nil {
					t.Fatal(err)
				}
			}

			// TCP from a member to a gVisor listener, both ways.
			ln, err := gonet.ListenTCP(st, tcpip.FullAddress{NIC: gwNIC, Addr: tcpip.AddrFrom4(gwIP.As4()), Port: 8080}, ipv4.ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			const size = 8 << 20
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				n, _ := io.Copy(io.Discard, io.LimitReader(c, size))
				fmt.Fprintf(c, "%d", n)
				c.Write(make([]byte, size))
			}()
			var conn net.Conn
			m2.do(func() { conn, err = net.DialTimeout("tcp", gwIP.String()+":8080", 5*time.Second) })
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(60 * time.Second)) // mtu 1500 through gVisor on a busy machine took over 20 s
			if _, err := conn.Write(make([]byte, size)); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprint(size); len(got) != len(want)+size || string(got[:len(want)]) != want {
				t.Fatalf("TCP echo: got %d bytes %q...", len(got), got[:min(len(got), 10)])
			}
			noSpoofDrops(t, s)

			// RemovePort wakes the TAP's pending read and detaches it.
			done := make(chan struct{})
			go func() { s.RemovePort(memberMAC(3)); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("RemovePort hangs on a TAP")
			}
			if err := m2.ping("-c", "1", "-W", "1", memberIP(3).String()); err == nil {
				t.Fatal("removed member still answers")
			}
		})
	}
}

func TestTAPIsolate(t *testing.T) {
	needNS(t)
	s := newSwitch(t, Options{MTU: 65520, Isolate: true})
	gatewayStack(t, s, true)
	m2 := kernelMember(t, s, 2, 65520, true)
	kernelMember(t, s, 3, 65520, true)
	if err := m2.ping("-c", "1", "-W", "3", gwIP.String()); err != nil {
		t.Fatal(err)
	}
	if err := m2.ping("-c", "1", "-W", "1", memberIP(3).String()); err == nil {
		t.Fatal("isolated members reach each other")
	}
	noSpoofDrops(t, s)
}
