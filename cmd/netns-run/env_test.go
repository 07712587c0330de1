package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvVars(t *testing.T) {
	t.Setenv("NR_FROM_CALLER", "caller value")
	os.Unsetenv("NR_UNSET")
	file := filepath.Join(t.TempDir(), "env")
	os.WriteFile(file, []byte("# a comment\n\n  A=from file\nB=\"quoted stays\"\nNR_FROM_CALLER\nNR_UNSET\nC=1\n"), 0o600)
	got, err := envVars([]string{"C=2", "NR_FROM_CALLER", "D=x=y"}, []string{file})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=from file", `B="quoted stays"`, "NR_FROM_CALLER=caller value", "C=1", "C=2", "NR_FROM_CALLER=caller value", "D=x=y"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("envVars =\n%q\nwant\n%q", got, want)
	}
	for _, bad := range []struct{ value, want string }{
		{"=x", `invalid --env "=x": the variable has no name`},
		{"A B=1", `invalid --env "A B=1": variable "A B" contains whitespace`},
	} {
		if _, err := envVars([]string{bad.value}, nil); err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("envVars(%q): %v; want %q", bad.value, err, bad.want)
		}
	}
	if _, err := envVars(nil, []string{filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "invalid --env-file") {
		t.Errorf("a missing --env-file: %v", err)
	}
}
