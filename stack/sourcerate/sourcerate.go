// Package sourcerate keeps a token bucket per source address in a bounded
// table, for the requests a member may send the network process a second
// (DNS queries, DHCP messages), and counts the requests each source had
// refused.
package sourcerate

import (
	"net/netip"
	"sync"

	"golang.org/x/time/rate"
)

// Limit is a rate of requests and the burst let through at once.
type Limit struct {
	PerSecond float64
	Burst     int
}

// MaxSources bounds the addresses a table keeps: a private network's
// sandbox may send from any source. Past it, new addresses share one more
// bucket, kept under the invalid address.
const MaxSources = 4096

// source is one address's bucket and its refusals.
type source struct {
	bucket  *rate.Limiter
	refused uint64
}

// Table is the buckets by source address; safe for concurrent use.
type Table struct {
	limit Limit
	mu    sync.Mutex
	by    map[netip.Addr]*source
}

// New returns a table whose sources each get l.
func New(l Limit) *Table {
	return &Table{limit: l, by: map[netip.Addr]*source{}}
}

// Allow takes a token from src's bucket, or counts a refusal when it has
// none.
func (t *Table) Allow(src netip.Addr) bool {
	src = src.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.by[src]
	if s == nil {
		if len(t.by) >= MaxSources {
			t.forgetIdle()
		}
		if len(t.by) >= MaxSources {
			src = netip.Addr{}
		}
		if s = t.by[src]; s == nil {
			s = &source{bucket: rate.NewLimiter(rate.Limit(t.limit.PerSecond), t.limit.Burst)}
			t.by[src] = s
		}
	}
	if s.bucket.Allow() {
		return true
	}
	s.refused++
	return false
}

// Exhausted reports whether src's bucket has no token now, without taking
// one or counting a refusal: a look before work that Allow would refuse
// anyway. False for a source the table does not hold: Allow decides
// which bucket it draws from.
func (t *Table) Exhausted(src netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.by[src.Unmap()]
	return s != nil && s.bucket.Tokens() < 1
}

// forgetIdle drops the sources whose bucket is full again and that had
// nothing refused: they are as good as new. t.mu is held.
func (t *Table) forgetIdle() {
	for a, s := range t.by {
		if s.refused == 0 && s.bucket.Tokens() >= float64(s.bucket.Burst()) {
			delete(t.by, a)
		}
	}
}

// Forget drops src (a member that left: the next one at its address
// starts afresh).
func (t *Table) Forget(src netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.by, src.Unmap())
}

// Refused counts the refusals by source address, nonzero ones only.
func (t *Table) Refused() map[netip.Addr]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[netip.Addr]uint64{}
	for a, s := range t.by {
		if s.refused > 0 {
			out[a] = s.refused
		}
	}
	return out
}
