package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// showTabs makes a file's layout visible in failure messages.
func showTabs(s string) string {
	return indent(strings.ReplaceAll(s, "\t", "<TAB>"))
}

// TestHostsFile checks the sandbox's own /etc/hosts, in Docker's layout.
func TestHostsFile(t *testing.T) {
	requireLauncher(t)
	hostBefore, _ := os.ReadFile("/etc/hosts")
	r := runNR(t, sandboxed([]string{
		"--hostname", "box1",
		"--add-host", "db.e2e:198.51.100.9",
		"--add-host", "gw.e2e:host-gateway",
		"--add-host", "db6.e2e:2001:db8::9",
	}, "cat", "/etc/hosts")...)
	wantExit(t, r, 0, "cat /etc/hosts in the sandbox")
	want := "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n" +
		"198.51.100.9\tdb.e2e\n" +
		gatewayIP + "\tgw.e2e\n" +
		"fd00::2\tgw.e2e\n" + // host-gateway: both families on a dual-stack network
		"2001:db8::9\tdb6.e2e\n" +
		sandboxIP + "\tbox1\n" +
		sandboxIP6 + "\tbox1\n"
	if r.stdout != want {
		t.Errorf("the sandbox's /etc/hosts:\n%s\nwant:\n%s", showTabs(r.stdout), showTabs(want))
	}
	if hostAfter, _ := os.ReadFile("/etc/hosts"); string(hostAfter) != string(hostBefore) {
		t.Errorf("the host's /etc/hosts changed:\n%s", hostAfter)
	}
}

// TestHostname checks --hostname and the default (12 hex digits), in the
// UTS namespace, /etc/hostname and /etc/hosts alike.
func TestHostname(t *testing.T) {
	requireLauncher(t)
	hostBefore, _ := os.Hostname()
	t.Run("--hostname", func(t *testing.T) {
		r := runNR(t, "--hostname", "box1", "--", "/bin/sh", "-c",
			fmt.Sprintf("%s hostname && echo === && %s cat /etc/hostname", probe, probe))
		wantExit(t, r, 0, "hostname in the sandbox")
		if want := "box1\n===\nbox1\n"; r.stdout != want {
			t.Errorf("hostname, then /etc/hostname: got %q, want %q", r.stdout, want)
		}
	})
	t.Run("default", func(t *testing.T) {
		r := runNR(t, "--", "/bin/sh", "-c",
			fmt.Sprintf("%s hostname && echo === && %s cat /etc/hostname && echo === && %s cat /etc/hosts", probe, probe, probe))
		wantExit(t, r, 0, "hostname in the sandbox")
		parts := strings.Split(r.stdout, "===\n")
		if len(parts) != 3 {
			t.Fatalf("unexpected output:\n%s", r)
		}
		name := strings.TrimSpace(parts[0])
		if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(name) {
			t.Errorf("default hostname %q: want 12 hex digits (a short id)", name)
		}
		if parts[1] != name+"\n" {
			t.Errorf("/etc/hostname %q: want %q", parts[1], name+"\n")
		}
		if self := sandboxIP + "\t" + name + "\n" + sandboxIP6 + "\t" + name + "\n"; !strings.HasSuffix(parts[2], self) {
			t.Errorf("/etc/hosts should end with %q:\n%s", self, showTabs(parts[2]))
		}
	})
	if after, _ := os.Hostname(); after != hostBefore {
		t.Errorf("the host's hostname changed from %q to %q", hostBefore, after)
	}
}

// TestSandboxIdentity checks that the command runs as root of a new user
// namespace that maps only the caller, in new net, mount and uts namespaces.
func TestSandboxIdentity(t *testing.T) {
	requireLauncher(t)
	r := runNR(t, sandboxed(nil, "id")...)
	wantExit(t, r, 0, "probe id")
	if r.stdout != "uid=0 gid=0\n" {
		t.Errorf("the command runs as %q, want uid=0 gid=0", strings.TrimSpace(r.stdout))
	}

	for _, m := range []struct {
		file string
		id   int
	}{{"uid_map", os.Getuid()}, {"gid_map", os.Getgid()}} {
		r := runNR(t, sandboxed(nil, "cat", "/proc/self/"+m.file)...)
		wantExit(t, r, 0, "cat /proc/self/"+m.file)
		lines := nonEmptyLines(r.stdout)
		if len(lines) != 1 || strings.Join(strings.Fields(lines[0]), " ") != fmt.Sprintf("0 %d 1", m.id) {
			t.Errorf("%s without --userns: %q, want one line \"0 %d 1\"", m.file, r.stdout, m.id)
		}
	}

	own := runCmd(t, cmdOpts{}, probe, "ns")
	wantExit(t, own, 0, "probe ns outside")
	in := runNR(t, sandboxed(nil, "ns")...)
	wantExit(t, in, 0, "probe ns in the sandbox")
	outside := map[string]string{}
	for _, l := range nonEmptyLines(own.stdout) {
		k, v, _ := strings.Cut(l, " ")
		outside[k] = v
	}
	for _, l := range nonEmptyLines(in.stdout) {
		k, v, _ := strings.Cut(l, " ")
		if k == "pid" {
			continue
		}
		if v == outside[k] {
			t.Errorf("the sandbox shares the caller's %s namespace (%s)", k, v)
		}
	}
}
