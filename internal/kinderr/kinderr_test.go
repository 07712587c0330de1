package kinderr

import (
	"errors"
	"testing"
)

func TestNew(t *testing.T) {
	kind := errors.New("kind")
	err := New(kind, "network %s not found", "x")
	if err.Error() != "network x not found" {
		t.Errorf("message %q", err)
	}
	if !errors.Is(err, kind) {
		t.Error("errors.Is does not find the kind")
	}
}
