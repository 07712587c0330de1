package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// itWorks is the page Apache's httpd image serves, which the walk-through
// fetches through links and a published port.
const itWorks = "<html><body><h1>It works!</h1></body></html>\n"

// walkthrough types netns-run command lines as a Docker user would and
// compares what they print, masked, with golden files.
type walkthrough struct {
	t    *testing.T
	u    *user
	mask *masker
}

// nr runs `netns-run LINE`, LINE split at spaces. It calls the binary
// directly: the suite's helpers would put a run that names no network on
// --network private, and the walk-through's links need the default network.
func (w *walkthrough) nr(line string) result {
	w.t.Helper()
	return runCmd(w.t, cmdOpts{env: w.u.env}, netnsRun, strings.Fields(line)...)
}

// typed runs `netns-run LINE` and requires exit status 0.
func (w *walkthrough) typed(line string) result {
	w.t.Helper()
	r := w.nr(line)
	wantExit(w.t, r, 0, "netns-run "+line)
	return r
}

// run types a `run -itd --name NAME ...` line and learns NAME's id from
// what it prints.
func (w *walkthrough) run(golden, name, line string) {
	w.t.Helper()
	r := w.typed(line)
	if id := strings.TrimSpace(r.stdout); regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		w.mask.learn(name, id)
	}
	w.check(golden, r.stdout)
}

// check compares masked output with the golden file.
func (w *walkthrough) check(golden, out string) {
	w.t.Helper()
	checkGolden(w.t, golden, w.mask.mask(out))
}

// untilOK retries a command until it exits 0, for at most 10s: run -d
// returns when the sandbox runs, a moment before httpd listens in it.
func untilOK(t *testing.T, what string, cmd func() result) result {
	t.Helper()
	var r result
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if r = cmd(); r.code == 0 || time.Now().After(deadline) {
			break
		}
	}
	wantExit(t, r, 0, what)
	return r
}

// fetcher is the walk-through's curl, or busybox wget where curl is not
// installed: both print just the page on stdout.
func fetcher() string {
	if _, err := exec.LookPath("curl"); err == nil {
		return "curl"
	}
	return "busybox wget -q -O -"
}

// grepLines keeps the lines matching re, as `| grep` does.
func grepLines(s string, re *regexp.Regexp) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if re.MatchString(l) {
			out.WriteString(l)
		}
	}
	return out.String()
}

// TestWalkthrough types the founding walk-through's command lines in its
// order, each image replaced by a command (centos by `busybox sh`, which
// with -it waits on its terminal as centos's shell does; httpd by busybox
// httpd serving Apache's page), and compares the output with what a
// Docker user sees (testdata/walkthrough/*.golden, masked as the masker
// says). Busybox provides ping (no ping is installed on the host); the
// ping is -c2 -i 0.2 rather than -c5 to keep the test short.
func TestWalkthrough(t *testing.T) {
	requireLauncher(t)
	requireTool(t, "busybox")
	curl := fetcher()
	u := newUser(t)
	w := &walkthrough{t: t, u: u, mask: newMasker()}
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(itWorks), 0o644); err != nil {
		t.Fatal(err)
	}
	httpd := "busybox httpd -f -p 80 -h " + www
	// Registered after newUser's, so it runs first: the network can only
	// go once its members are gone. After a failure part of this may
	// not exist, which is no news.
	t.Cleanup(func() {
		rm := "rm -f"
		for _, sb := range w.mask.sandboxes {
			rm += " " + sb.name
		}
		for _, line := range []string{rm, "network rm macvlan1"} {
			if r := w.nr(line); r.code != 0 && !t.Failed() {
				t.Errorf("cleanup: netns-run %s:\n%s", line, r)
			}
		}
	})

	// 1. MACVLAN: two members with their own MACs, .2 and .3.
	w.check("00-network-create", w.typed("network create -d macvlan --subnet=192.168.57.0/24 --gateway=192.168.57.1 --ip-range=192.168.57.0/24 macvlan1").stdout)
	checkGolden(t, "01-network-ls", maskTable(w.typed("network ls").stdout, w.mask.mask))
	w.run("02-run-mac-nasa", "mac-nasa", "run -itd --name mac-nasa --network macvlan1 busybox sh")
	w.run("03-run-mac-nasa2", "mac-nasa2", "run -itd --name mac-nasa2 --network macvlan1 busybox sh")
	// Docker's `ip a` differs: IPv6 is off on its lo too (no ::1), and
	// eth0 is "N: eth0@ifM: ... mtu 1500 qdisc noqueue state UP group
	// default" with "link-netnsid 0"; here it is a TAP: "2: eth0: ... mtu
	// 65520 qdisc pfifo_fast state UNKNOWN group default qlen 1000". As
	// with Docker, eth0 has no IPv6 on a network without it.
	w.check("04-exec-mac-nasa-ip-a", w.typed("exec mac-nasa ip a").stdout)
	w.check("05-exec-mac-nasa2-ip-a", w.typed("exec mac-nasa2 ip a").stdout)
	w.check("06-exec-mac-nasa-ping", w.typed("exec mac-nasa busybox ping -c2 -i 0.2 192.168.57.3").stdout)

	// 2. Legacy links on the default network.
	w.run("07-run-web-nasa", "web-nasa", "run -itd --name web-nasa "+httpd)
	w.run("08-run-link-nasa", "link-nasa", "run -itd --name link-nasa --link web-nasa busybox sh")
	w.check("09-exec-link-nasa-curl", untilOK(t, "curl web-nasa", func() result { return w.nr("exec link-nasa " + curl + " web-nasa") }).stdout)
	w.check("10-exec-link-nasa-hosts", w.typed("exec link-nasa cat /etc/hosts").stdout)
	w.run("11-run-link-alias", "link-alias", "run -itd --name link-alias --link web-nasa:nasa1515 busybox sh")
	w.check("12-exec-link-alias-curl", untilOK(t, "curl nasa1515", func() result { return w.nr("exec link-alias " + curl + " nasa1515") }).stdout)
	w.check("13-exec-link-alias-hosts", w.typed("exec link-alias cat /etc/hosts").stdout)

	// 3. Port forwarding: the host's port 8080 answers for pf-nasa-web's 80.
	w.run("14-run-pf-nasa-web", "pf-nasa-web", "run -itd --name pf-nasa-web -p 8080:80 "+httpd)
	host := strings.Fields(curl + " localhost:8080")
	page := untilOK(t, "curl localhost:8080", func() result { return runCmd(t, cmdOpts{}, host[0], host[1:]...) })
	w.check("15-curl-localhost-8080", page.stdout)
	// IMAGE is the command's program here, where Docker names the image.
	checkGolden(t, "16-ps", maskTable(w.typed("ps").stdout, w.mask.mask))
	ipa := regexp.MustCompile(`(?i)IPA`)
	w.check("17-inspect-mac-nasa2-grep-ipa", grepLines(w.typed("inspect mac-nasa2").stdout, ipa))
	w.check("18-inspect-web-nasa-grep-ipa", grepLines(w.typed("inspect web-nasa").stdout, ipa))
	w.check("19-port-pf-nasa-web", w.typed("port pf-nasa-web").stdout)
	// Docker shows Options {"parent": IFACE}: this network has no parent.
	checkGolden(t, "20-network-inspect-macvlan1", sortEntries(w.mask.mask(w.typed("network inspect macvlan1").stdout), "Containers"))
}
