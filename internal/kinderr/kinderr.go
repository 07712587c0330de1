// Package kinderr makes errors whose message is for people and whose kind
// is a sentinel for errors.Is, without the sentinel's text in the message
// (fmt.Errorf's %w would put it there).
package kinderr

import "fmt"

// Error is a message for people (Error) of a kind (Unwrap).
type Error struct {
	Msg  string
	Kind error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// New formats the message of an error of kind.
func New(kind error, format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...), Kind: kind}
}
