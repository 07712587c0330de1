package ethswitch

import "sync/atomic"

// A Tap sees a frame the switch takes in: one a member sent (before the
// switch's checks, so that dropped frames show too), one the gateway sent,
// or a DHCP reply the switch made. It runs on the goroutine that carries
// the frame, so it must be quick and must not block; frame is valid only
// during the call.
type Tap func(frame []byte)

// taps is the switch's set of taps, copy-on-write like the port table: a
// frame's path costs one atomic load when none is set.
type taps []Tap

// AddTap starts sending frames to t until the returned function is called.
func (s *Switch) AddTap(t Tap) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := new(byte) // identity of this tap, since funcs do not compare
	s.tapKeys = append(s.tapKeys, key)
	s.publishTaps(append(s.tapList(), t))
	var once atomic.Bool
	return func() {
		if once.Swap(true) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		old := s.tapList()
		next := make(taps, 0, len(old))
		keys := s.tapKeys[:0:0]
		for i, k := range s.tapKeys {
			if k != key {
				next = append(next, old[i])
				keys = append(keys, k)
			}
		}
		s.tapKeys = keys
		s.publishTaps(next)
	}
}

// tapList is the current set; s.mu is held.
func (s *Switch) tapList() taps {
	if t := s.taps.Load(); t != nil {
		return *t
	}
	return nil
}

// publishTaps swaps in a new set, nil when empty; s.mu is held.
func (s *Switch) publishTaps(t taps) {
	if len(t) == 0 {
		s.taps.Store(nil)
		return
	}
	s.taps.Store(&t)
}

// tap hands frame to every tap.
func (t *taps) tap(frame []byte) {
	for _, f := range *t {
		f(frame)
	}
}
