package stack

import (
	"net/netip"
	"sync"
)

// memberConns are the NAT's TCP connections by member address, so that a
// member's leaving ends them (EndMember): its sandbox is gone, so none
// of its ends will close them, and gVisor, which has no one to
// retransmit to, would hold each, with its host socket and buffers, for
// minutes.
type memberConns struct {
	mu sync.Mutex
	by map[netip.Addr]*connSet
}

type connSet struct{ aborts map[*func()]struct{} }

// add tracks abort under member until the returned forget.
func (t *memberConns) add(member netip.Addr, abort func()) (forget func()) {
	key := &abort
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.by == nil {
		t.by = make(map[netip.Addr]*connSet)
	}
	set := t.by[member]
	if set == nil {
		set = &connSet{aborts: make(map[*func()]struct{})}
		t.by[member] = set
	}
	set.aborts[key] = struct{}{}
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(set.aborts, key)
		if len(set.aborts) == 0 && t.by[member] == set {
			delete(t.by, member)
		}
	}
}

// end aborts every connection of member and forgets them.
func (t *memberConns) end(member netip.Addr) {
	t.mu.Lock()
	set := t.by[member]
	delete(t.by, member)
	t.mu.Unlock()
	if set == nil {
		return
	}
	for abort := range set.aborts {
		(*abort)()
	}
}
