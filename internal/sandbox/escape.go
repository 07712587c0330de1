package sandbox

// escaper finds the detach keys (Docker's ctrl-p ctrl-q) in an attached
// client's input: bytes that may begin them are held back until the keys
// are typed in full (detach, and they are not passed on) or a byte breaks
// them off (the held bytes are passed on, as Docker does).
type escaper struct {
	keys []byte
	held int // how many of keys the input ended with so far
}

// feed returns the part of p to pass on, and whether the keys were typed;
// what followed them in p is dropped.
func (e *escaper) feed(p []byte) ([]byte, bool) {
	if len(e.keys) == 0 {
		return p, false
	}
	out := make([]byte, 0, len(p)+e.held)
	for _, b := range p {
		if b != e.keys[e.held] && e.held > 0 {
			out = append(out, e.keys[:e.held]...)
			e.held = 0
		}
		if b != e.keys[e.held] {
			out = append(out, b)
			continue
		}
		e.held++
		if e.held == len(e.keys) {
			e.held = 0
			return out, true
		}
	}
	return out, false
}
