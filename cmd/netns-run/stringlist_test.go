package main

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"
)

// A repeatable flag keeps each use whole, commas included, as pflag's
// StringArray does, and shows no default when it has none.
func TestStringList(t *testing.T) {
	var got []string
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	stringListVarP(fs, &got, "publish", "p", "a port")
	if err := fs.Parse([]string{"-p", "8080:80,9090:90", "--publish=53:53/udp"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"8080:80,9090:90", "53:53/udp"}; !slices.Equal(got, want) {
		t.Errorf("values %q; want %q", got, want)
	}
	f := fs.Lookup("publish")
	if f.DefValue != "" || f.Value.Type() != "stringArray" || f.Value.String() != "[8080:80,9090:90,53:53/udp]" {
		t.Errorf("default %q, type %q, value %q", f.DefValue, f.Value.Type(), f.Value.String())
	}
}
