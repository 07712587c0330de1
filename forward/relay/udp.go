package relay

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxDatagram fits any UDP payload.
const maxDatagram = 65535

// UDPFlow copies datagrams both ways between two connected UDP
// connections until neither has carried traffic for idle, then closes both.
func UDPFlow(a, b net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	pump := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, maxDatagram)
		for {
			src.SetReadDeadline(time.Now().Add(idle))
			n, err := src.Read(buf)
			if err != nil {
				// A deadline is the end only if the other way is idle too.
				if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
					continue
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					continue
				}
				a.Close()
				b.Close()
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:n]); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				a.Close()
				b.Close()
				return
			}
		}
	}
	go pump(a, b)
	go pump(b, a)
	wg.Wait()
}
