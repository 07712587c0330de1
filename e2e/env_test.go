package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnvironment: run -e and --env-file set the command's variables as
// Docker applies them (the file first, -e wins, a bare KEY takes the
// caller's value), HOSTNAME names the sandbox, and exec runs in the
// sandbox's environment, not its own caller's, with exec -e on top and -w
// as the working directory.
func TestEnvironment(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	file := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(file, []byte("# settings\nFROM_FILE=file\nOVERRIDDEN=file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(append([]string{}, u.env...), "NR_E2E_BARE=from the caller")
	p := startCmd(t, cmdOpts{env: env}, netnsRun, "run", "--name", "envbox", "--hostname", "envhost", "--network", "private",
		"--env-file", file, "-e", "OVERRIDDEN=flag", "-e", "NR_E2E_BARE", "-e", "EMPTY=", "--", probe, "wait-signal", "-timeout", "60s")
	p.waitReady()
	t.Cleanup(func() { u.nr("stop", "-t", "1", "envbox") })

	execEnv := append(append([]string{}, u.env...), "NR_E2E_EXEC_CALLER=leaked")
	r := runCmd(t, cmdOpts{env: execEnv}, netnsRun, "exec", "-e", "EXEC_SET=yes", "-w", "/proc", "envbox", "--", "/bin/sh", "-c", "env; echo cwd=$(pwd)")
	wantExit(t, r, 0, "exec env")
	lines := nonEmptyLines(r.stdout)
	has := func(kv string) bool {
		for _, l := range lines {
			if l == kv {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"FROM_FILE=file", "OVERRIDDEN=flag", "NR_E2E_BARE=from the caller", "EMPTY=", "HOSTNAME=envhost", "EXEC_SET=yes", "cwd=/proc"} {
		if !has(want) {
			t.Errorf("exec's environment lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "NR_E2E_EXEC_CALLER") {
		t.Errorf("exec took its own caller's environment instead of the sandbox's:\n%s", r.stdout)
	}
	wantOwnError(t, u.nr("run", "-e", "=x", "--", probe, "exit", "0"), "a variable without a name", `invalid --env "=x"`)
}
