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

// TestLinkEnvironment: --link on the default bridge sets Docker's legacy
// link variables (address, ports, name, the linked sandbox's -e values
// but HOME and PATH), as a Docker engine sets them; on a user-defined
// network, as in Docker, none.
func TestLinkEnvironment(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("run", "-d", "--name", "lnk-db", "--network", "bridge", "-e", "FOO=bar", "-e", "PATH=/bin",
		"-p", "18261:80", "-p", "18262:53/udp", "--", probe, "sleep", "60s")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "lnk-db") })
	ip := strings.TrimSpace(u.ok("ps", "--format", "{{.IPAddresses}}", "--filter", "name=lnk-db").stdout)
	r := u.ok("run", "--network", "bridge", "--name", "lnk-web", "--link", "lnk-db:my-db", "--", "/bin/sh", "-c", "env | grep ^MY_DB_ | sort")
	want := strings.Join([]string{
		"MY_DB_ENV_FOO=bar",
		"MY_DB_NAME=/lnk-web/my-db",
		"MY_DB_PORT=udp://" + ip + ":53",
		"MY_DB_PORT_53_UDP=udp://" + ip + ":53",
		"MY_DB_PORT_53_UDP_ADDR=" + ip,
		"MY_DB_PORT_53_UDP_PORT=53",
		"MY_DB_PORT_53_UDP_PROTO=udp",
		"MY_DB_PORT_80_TCP=tcp://" + ip + ":80",
		"MY_DB_PORT_80_TCP_ADDR=" + ip,
		"MY_DB_PORT_80_TCP_PORT=80",
		"MY_DB_PORT_80_TCP_PROTO=tcp",
	}, "\n") + "\n"
	if r.stdout != want {
		t.Errorf("link variables:\n%s\nwant (as a Docker engine sets them):\n%s", r.stdout, want)
	}
	u.ok("network", "create", "lnknet")
	u.ok("run", "-d", "--name", "lnk-db2", "--network", "lnknet", "-e", "FOO=bar", "--", probe, "sleep", "60s")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "lnk-db2") })
	if r := u.ok("run", "--network", "lnknet", "--link", "lnk-db2:db2", "--", "/bin/sh", "-c", "env | grep -c ^DB2_ || true"); strings.TrimSpace(r.stdout) != "0" {
		t.Errorf("link variables on a user-defined network: %s", r.stdout)
	}
}
