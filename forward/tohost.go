package forward

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// HostForward is one port of the sandbox's loopback forwarded to the
// host's loopback (-T, as pasta's -T/--tcp-ns): a client inside connecting
// to 127.0.0.1:SandboxPort (or [::1]) reaches the host's
// 127.0.0.1:HostPort. The sandbox listens with a kernel socket and the
// bytes move kernel socket to kernel socket (spliced), never through the
// gVisor stack: the sandbox's fastest way to a host service.
type HostForward struct {
	SandboxPort uint16
	HostPort    uint16
}

func (f HostForward) String() string {
	if f.SandboxPort == f.HostPort {
		return strconv.Itoa(int(f.SandboxPort))
	}
	return fmt.Sprintf("%d:%d", f.SandboxPort, f.HostPort)
}

// hostForwardForm is the grammar quoted in every parse error.
const hostForwardForm = "PORT[-END][:HOST_PORT[-END]][,...]"

// ParseHostForwards parses -T values, each a comma-separated list of
// PORT[-END][:HOST_PORT[-END]], where HOST_PORT defaults to PORT and a
// host range, when given, has the sandbox range's length (pasta's -T
// grammar, without its address and "auto" forms). A sandbox port may be
// forwarded once only.
func ParseHostForwards(specs []string) ([]HostForward, error) {
	var out []HostForward
	seen := map[uint16]bool{}
	for _, spec := range specs {
		fs, err := parseHostForward(spec)
		if err != nil {
			return nil, err
		}
		for _, f := range fs {
			if seen[f.SandboxPort] {
				return nil, fmt.Errorf("invalid -T spec %q: sandbox port %d is forwarded twice", spec, f.SandboxPort)
			}
			seen[f.SandboxPort] = true
		}
		out = append(out, fs...)
	}
	return out, nil
}

func parseHostForward(spec string) ([]HostForward, error) {
	fail := func(format string, args ...any) ([]HostForward, error) {
		return nil, fmt.Errorf("invalid -T spec %q: %s; -T takes %s", spec, fmt.Sprintf(format, args...), hostForwardForm)
	}
	var out []HostForward
	for _, item := range strings.Split(spec, ",") {
		inside, host, hasHost := strings.Cut(item, ":")
		first, last, err := parsePortRange(inside)
		if err != nil {
			return fail("%v", err)
		}
		hostFirst, hostLast := first, last
		if hasHost {
			if hostFirst, hostLast, err = parsePortRange(host); err != nil {
				return fail("%v", err)
			}
			if hostFirst == hostLast && first != last {
				hostLast = hostFirst + (last - first)
				if hostLast < hostFirst {
					return fail("host ports past 65535")
				}
			}
			if hostLast-hostFirst != last-first {
				return fail("the host range %s has another length than %s", host, inside)
			}
		}
		for i := 0; i <= int(last-first); i++ {
			out = append(out, HostForward{SandboxPort: first + uint16(i), HostPort: hostFirst + uint16(i)})
		}
	}
	return out, nil
}

// hostDialTimeout bounds a dial to the host's loopback (answered at once,
// unless its accept queue is full).
const hostDialTimeout = 5 * time.Second

// ServeToHost accepts the sandbox's clients on ln (a listener on the
// sandbox's loopback, made inside it) and relays each to the host's
// loopback at hostPort, in the client's address family (127.0.0.1 for
// an IPv4 client; ::1, then 127.0.0.1, for an IPv6 one). A client the
// host refuses is closed at once, as the refusal would be seen. It
// returns, and closes ln, when ctx ends: ln is closed by then.
func ServeToHost(ctx context.Context, ln net.Listener, hostPort uint16) {
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { ln.Close(); close(closed) })
	defer func() {
		// Accept fails as soon as the close begins; the socket goes
		// with the close's last step.
		if !stop() {
			<-closed
		}
	}()
	relayAccepted(ln, func(c net.Conn) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, hostDialTimeout)
		defer cancel()
		return dialHostLoopback(dctx, c.RemoteAddr(), hostPort)
	})
}

// dialHostLoopback dials the host's loopback in client's family.
func dialHostLoopback(ctx context.Context, client net.Addr, port uint16) (net.Conn, error) {
	var d net.Dialer
	v4 := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port).String()
	if a, ok := client.(*net.TCPAddr); ok && a.AddrPort().Addr().Unmap().Is4() {
		return d.DialContext(ctx, "tcp4", v4)
	}
	c, err := d.DialContext(ctx, "tcp6", netip.AddrPortFrom(netip.IPv6Loopback(), port).String())
	if err == nil || ctx.Err() != nil {
		return c, err
	}
	return d.DialContext(ctx, "tcp4", v4)
}
