package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShellIntegration: the completion scripts cobra makes are valid for
// their shells, completion offers the user's own sandbox and network
// names where a command takes them (what the scripts ask the binary
// through __complete). The man pages have a unit test (TestManPages).
func TestShellIntegration(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := u.ok("completion", sh)
		if !strings.Contains(r.stdout, "__complete") {
			t.Errorf("completion %s: the script does not ask the binary (__complete):\n%.300s", sh, r.stdout)
		}
		if sh == "bash" {
			script := filepath.Join(t.TempDir(), "netns-run.bash")
			if err := os.WriteFile(script, []byte(r.stdout), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
				t.Errorf("bash -n on the bash completion: %v\n%s", err, out)
			}
		}
	}
	u.ok("network", "create", "compnet")
	u.ok("run", "-d", "--name", "comp-up", "--network", "compnet", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "comp-done", "--network", "none", "--", "true")
	for deadline := time.Now().Add(5 * time.Second); u.inspect("comp-done")["State"].(map[string]any)["Running"] == true && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { u.nr("rm", "comp-done"); u.nr("stop", "-t", "1", "comp-up") })
	complete := func(args ...string) []string {
		t.Helper()
		r := u.ok(append([]string{"__complete"}, args...)...)
		var words []string
		for _, l := range nonEmptyLines(r.stdout) {
			if !strings.HasPrefix(l, ":") {
				words = append(words, l)
			}
		}
		return words
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"stop", ""}, "comp-up"},                           // running ones only
		{[]string{"rm", "comp"}, "comp-done comp-up"},               // any state, by prefix
		{[]string{"network", "rm", ""}, "bridge compnet host none"}, // networks
		{[]string{"network", "connect", "compnet", ""}, "comp-up"},  // a network, then a running sandbox
		{[]string{"exec", "comp-up", ""}, ""},                       // the command: the shell's own
		{[]string{"inspect", "comp-up", "comp"}, "comp-done"},       // not twice
	} {
		if got := strings.Join(complete(c.args...), " "); got != c.want {
			t.Errorf("completing %q: %q; want %q", c.args, got, c.want)
		}
	}

}
