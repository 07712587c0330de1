package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestHostNetwork: --network host keeps the caller's network namespace, as
// Docker's host network: the same namespace, the host's hostname, a copy
// of the host's /etc/hosts (with --add-host lines after) and resolv.conf,
// servers in the sandbox on the host's own ports; network ls lists
// bridge, host and none as Docker does, network inspect host shows its
// members, and what cannot apply (-p) is refused in one line.
func TestHostNetwork(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	ownNet, _ := os.Readlink("/proc/self/ns/net")
	hostname, _ := os.Hostname()
	hostsFile, _ := os.ReadFile("/etc/hosts")
	resolvConf, _ := os.ReadFile("/etc/resolv.conf")
	r := u.ok("run", "--network", "host", "--add-host", "extra.e2e:198.51.100.9", "--", "/bin/sh", "-c",
		"readlink /proc/self/ns/net; "+probe+" hostname; echo ===; cat /etc/hosts; echo ===; cat /etc/resolv.conf")
	parts := strings.Split(r.stdout, "===\n")
	if len(parts) != 3 {
		t.Fatalf("unexpected output:\n%s", r)
	}
	if want := ownNet + "\n" + hostname + "\n"; parts[0] != want {
		t.Errorf("namespace and hostname: %q; want %q (the caller's)", parts[0], want)
	}
	if want := string(hostsFile) + "198.51.100.9\textra.e2e\n"; parts[1] != want {
		t.Errorf("/etc/hosts:\n%s\nwant the host's with the --add-host line after:\n%s", showTabs(parts[1]), showTabs(want))
	}
	if parts[2] != string(resolvConf) {
		t.Errorf("resolv.conf: %q; want the host's %q", parts[2], resolvConf)
	}

	u.ok("run", "-d", "--name", "hostnet-web", "--network", "host", "--", probe, "serve-tcp", "18250")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "hostnet-web") })
	if got := waitTCP(t, "127.0.0.1:18250"); !strings.HasPrefix(got, "from 127.0.0.1:") {
		t.Errorf("a server on the host network, from the host's loopback: %q", got)
	}
	ls := u.ok("network", "ls").stdout
	if !regexp.MustCompile(`(?m)^[0-9a-f]{12} +bridge +bridge +local\n[0-9a-f]{12} +host +host +local\n[0-9a-f]{12} +none +null +local$`).MatchString(ls) {
		t.Errorf("network ls: want bridge, host and none as Docker lists them:\n%s", ls)
	}
	var nets []struct {
		Name, Driver string
		Containers   map[string]struct{ Name string }
	}
	if err := json.Unmarshal([]byte(u.ok("network", "inspect", "host").stdout), &nets); err != nil || len(nets) != 1 || nets[0].Driver != "host" {
		t.Fatalf("network inspect host: %v %+v", err, nets)
	}
	found := false
	for _, c := range nets[0].Containers {
		found = found || c.Name == "hostnet-web"
	}
	if !found {
		t.Errorf("network inspect host lacks hostnet-web: %+v", nets[0])
	}
	wantOwnError(t, u.nr("run", "--network", "host", "-p", "18251:80", "--", probe, "exit", "0"), "-p on the host network", "its ports are the host's already")
	wantOwnError(t, u.nr("network", "rm", "host"), "removing host", "host is a pre-defined network and cannot be removed")
	wantOwnError(t, u.nr("network", "connect", "none", "hostnet-web"), "connecting to none", "cannot be connected to the none network")
}
