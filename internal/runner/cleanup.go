package runner

// cleanups is a run's teardown: each acquisition pushes its release right
// after it succeeds, and unwind runs them in reverse order, each once, on
// error and at the end alike. The paths then need no hand-copied unwinding.
type cleanups struct {
	fns []func()
}

// push adds the release of what was just acquired.
func (c *cleanups) push(fn func()) { c.fns = append(c.fns, fn) }

// unwind runs the releases, last pushed first, and forgets them.
func (c *cleanups) unwind() {
	for len(c.fns) > 0 {
		fn := c.fns[len(c.fns)-1]
		c.fns = c.fns[:len(c.fns)-1]
		fn()
	}
}
