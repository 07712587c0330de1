//go:build linux

package main

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"
)

// The detached process parses its command line with the root and run
// alone; it must read every detached run's as the whole tree does.
func TestDetachedRootCommandParsesAsTheFullTree(t *testing.T) {
	for _, argv := range [][]string{
		{"run", "-d", "--name", "web", "--", "sleep", "infinity"},
		{"-d", "--", "sleep", "infinity"},
		{"-d", "-p", "8080:80", "-e", "A=B", "sleep", "1"},
		{"--name", "web", "run", "-d", "--rm", "--", "true"},
		{"run", "-d", "--network", "mynet", "--ip", "10.0.0.5", "sh", "-c", "run -d"},
	} {
		full, detached := newRootCommand(), newDetachedRootCommand()
		c1, rest1, err1 := full.Find(argv)
		c2, rest2, err2 := detached.Find(argv)
		if err1 != nil || err2 != nil {
			t.Fatalf("%q: find: %v, %v", argv, err1, err2)
		}
		if c1.Name() != c2.Name() || !slices.Equal(rest1, rest2) {
			t.Fatalf("%q: the full tree finds %s %q, the detached one %s %q", argv, c1.Name(), rest1, c2.Name(), rest2)
		}
		if err := c1.ParseFlags(rest1); err != nil {
			t.Fatalf("%q: %v", argv, err)
		}
		if err := c2.ParseFlags(rest2); err != nil {
			t.Fatalf("%q: %v", argv, err)
		}
		if !slices.Equal(c1.Flags().Args(), c2.Flags().Args()) {
			t.Fatalf("%q: arguments %q and %q", argv, c1.Flags().Args(), c2.Flags().Args())
		}
		c1.Flags().VisitAll(func(f *pflag.Flag) {
			g := c2.Flags().Lookup(f.Name)
			if g == nil || g.Value.String() != f.Value.String() || g.Changed != f.Changed {
				t.Errorf("%q: flag %s is %v in the full tree, %v in the detached one", argv, f.Name, f.Value, g)
			}
		})
	}
}
