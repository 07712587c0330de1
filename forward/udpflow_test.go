package forward

import (
	"net"
	"testing"
	"time"
)

// deadlineConn counts the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	set int
}

func (c *deadlineConn) SetReadDeadline(time.Time) error { c.set++; return nil }

// A flow busy with datagrams pushes its idle deadline back once, not once
// a datagram: on gVisor's side each push remakes a timer.
func TestUDPFlowPushesItsDeadlineSparingly(t *testing.T) {
	c := &deadlineConn{}
	f := &udpFlow{inner: c}
	for range 1000 {
		f.active()
	}
	if c.set != 1 {
		t.Errorf("1000 datagrams within a second set the deadline %d times; want once", c.set)
	}
	f.pushed.Store(time.Now().Add(-2 * udpIdleSlack).UnixNano())
	f.active()
	if c.set != 2 {
		t.Errorf("a datagram past the slack: %d deadlines set; want a second one", c.set)
	}
}
