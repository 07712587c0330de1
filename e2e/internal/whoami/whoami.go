// Package whoami holds the tiny servers that the e2e harness and the probes
// share: a TCP server that tells each client the address it sees and then
// echoes, and a UDP server that answers each datagram with the sender's
// address and the payload.
package whoami

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ConnLifetime bounds how long one TCP client may keep a connection.
const ConnLifetime = 2 * time.Minute

// Banner is the first line the TCP server writes: "from IP:PORT\n".
func Banner(remote net.Addr) string {
	return fmt.Sprintf("from %s\n", remote)
}

// UDPReply is the answer to one datagram: "from IP:PORT PAYLOAD".
func UDPReply(remote net.Addr, payload []byte) []byte {
	return []byte(fmt.Sprintf("from %s %s", remote, payload))
}

// ServeTCP accepts until the listener is closed. For each connection it
// writes the banner, then echoes everything it reads until EOF.
func ServeTCP(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go handleTCP(c)
	}
}

func handleTCP(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ConnLifetime))
	if _, err := io.WriteString(c, Banner(c.RemoteAddr())); err != nil {
		return
	}
	_, _ = io.Copy(c, c)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// ServeUDP answers every datagram until the socket is closed.
func ServeUDP(pc net.PacketConn) error {
	buf := make([]byte, 65536)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		_, _ = pc.WriteTo(UDPReply(addr, buf[:n]), addr)
	}
}
