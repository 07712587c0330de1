package wire

import "fmt"

// ExactlyOne is the check of a tagged union: given whether each member is
// set, it fails unless exactly one is.
func ExactlyOne(set ...bool) error {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("want exactly one member of the message set, got %d", n)
	}
	return nil
}
