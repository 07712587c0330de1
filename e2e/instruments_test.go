package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var capturingRE = regexp.MustCompile(`^capturing on network `)

// TestCaptureNetwork: network capture writes what the switch sees between
// two members in pcap, to a file tcpdump reads and to stdout through a
// pipe; a network with no member, a bad filter and a missing -w are one
// clear line each.
func TestCaptureNetwork(t *testing.T) {
	requireLauncher(t)
	tcpdump := requireTool(t, "tcpdump")
	u := newUser(t)
	u.ok("network", "create", "--subnet", "172.29.0.0/16", "capnet")
	u.ok("run", "-d", "--name", "cap-a", "--network", "capnet", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "cap-b", "--network", "capnet", "--", probe, "sleep", "60s")

	file := filepath.Join(t.TempDir(), "capnet.pcap")
	p := startCmd(t, cmdOpts{env: u.env}, netnsRun, "network", "capture", "capnet", "-w", file, "--count", "4", "icmp")
	p.waitLine("stderr", capturingRE)
	u.ok("exec", "cap-a", "--", "busybox", "ping", "-c", "2", "-W", "2", "172.29.0.3")
	r := p.wait(20 * time.Second)
	wantExit(t, r, 0, "network capture -w FILE --count 4 icmp")
	if !strings.Contains(r.stderr, "4 packets captured, 0 dropped") {
		t.Errorf("network capture's summary: %q", r.stderr)
	}
	r = runCmd(t, cmdOpts{}, tcpdump, "-nr", file)
	wantExit(t, r, 0, "tcpdump -nr the capture")
	for _, want := range []string{"IP 172.29.0.2 > 172.29.0.3: ICMP echo request", "IP 172.29.0.3 > 172.29.0.2: ICMP echo reply"} {
		if strings.Count(r.stdout, want) != 2 {
			t.Errorf("tcpdump -nr shows %q %d times; want 2:\n%s", want, strings.Count(r.stdout, want), r.stdout)
		}
	}

	// -w - streams to stdout, here a pipe read whole once it ends.
	p = startCmd(t, cmdOpts{env: u.env}, netnsRun, "network", "capture", "capnet", "--member", "cap-b", "-w", "-", "-c", "2", "icmp")
	p.waitLine("stderr", capturingRE)
	u.ok("exec", "cap-a", "--", "busybox", "ping", "-c", "1", "-W", "2", "172.29.0.3")
	r = p.wait(20 * time.Second)
	wantExit(t, r, 0, "network capture -w -")
	pr, err := pcapgo.NewReader(strings.NewReader(r.stdout))
	if err != nil {
		t.Fatalf("the pcap on stdout: %v (%d bytes)", err, len(r.stdout))
	}
	var types []layers.ICMPv4TypeCode
	for {
		data, _, err := pr.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the pcap on stdout: %v", err)
		}
		if icmp, ok := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
			types = append(types, icmp.TypeCode)
		}
	}
	if fmt.Sprint(types) != "[EchoRequest EchoReply]" {
		t.Errorf("the ICMP frames on stdout: %v; want [EchoRequest EchoReply]", types)
	}

	u.ok("network", "create", "--subnet", "172.31.0.0/16", "emptynet")
	other := filepath.Join(t.TempDir(), "x.pcap")
	wantOwnError(t, u.nr("network", "capture", "emptynet", "-w", other), "capture of a network with no member", "network emptynet is not running", "netns-run run")
	wantOwnError(t, u.nr("network", "capture", "capnet", "-w", other, "port", "http"), "a bad filter", `capture filter "port http"`)
	wantOwnError(t, u.nr("network", "capture", "nosuchnet", "-w", other), "capture of a missing network", "nosuchnet")
	wantOwnError(t, u.nr("network", "capture", "capnet"), "capture without -w", "needs -w FILE")
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("a capture that did not start left its file: %v", err)
	}
}

// statsLine is one line of stats --format json.
type statsLine struct {
	Name, Network string
	Counters      *struct {
		RxBytes   uint64            `json:"rx_bytes"`
		RxPackets uint64            `json:"rx_packets"`
		TxBytes   uint64            `json:"tx_bytes"`
		TxPackets uint64            `json:"tx_packets"`
		Drops     map[string]uint64 `json:"drops"`
	}
}

// jsonStats returns stats --no-stream --format json by sandbox name.
func (u *user) jsonStats() map[string]statsLine {
	u.t.Helper()
	r := u.ok("stats", "--no-stream", "--format", "json")
	out := map[string]statsLine{}
	for _, l := range nonEmptyLines(r.stdout) {
		var s statsLine
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			u.t.Fatalf("stats --format json: %v in %q", err, l)
		}
		out[s.Name] = s
	}
	return out
}

func (s statsLine) counters(t *testing.T) (rx, tx, drops uint64) {
	t.Helper()
	if s.Counters == nil {
		t.Fatalf("stats has no counters for %s on %s", s.Name, s.Network)
	}
	for _, n := range s.Counters.Drops {
		drops += n
	}
	return s.Counters.RxBytes, s.Counters.TxBytes, drops
}

// TestStatsMembers: stats counts what one member sends another (both
// ways round), and what a --network private sandbox sends its gateway
// (counted by its supervisor), the spoofed frames the switch drops, and
// lists a sandbox on --network none with no counters.
func TestStatsMembers(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--subnet", "172.30.0.0/16", "statnet")
	u.ok("run", "-d", "--name", "st-a", "--network", "statnet", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "st-b", "--network", "statnet", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "st-priv", "--network", "private", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "st-none", "--network", "none", "--", probe, "sleep", "60s")
	before := u.jsonStats()
	// 5 echo requests of 1000 bytes of data each way: at least 5000 bytes.
	u.ok("exec", "st-a", "--", "busybox", "ping", "-c", "5", "-s", "1000", "-W", "2", "172.30.0.3")
	u.ok("exec", "st-priv", "--", "busybox", "ping", "-c", "5", "-s", "1000", "-W", "2", "10.0.2.2")
	after := u.jsonStats()
	aRx0, aTx0, _ := before["st-a"].counters(t)
	aRx1, aTx1, aDrops1 := after["st-a"].counters(t)
	bRx0, bTx0, _ := before["st-b"].counters(t)
	bRx1, bTx1, _ := after["st-b"].counters(t)
	pRx0, pTx0, _ := before["st-priv"].counters(t)
	pRx1, pTx1, _ := after["st-priv"].counters(t)
	for what, moved := range map[string]uint64{
		"st-a's tx": aTx1 - aTx0, "st-a's rx": aRx1 - aRx0, "st-b's tx": bTx1 - bTx0, "st-b's rx": bRx1 - bRx0,
		"st-priv's tx": pTx1 - pTx0, "st-priv's rx": pRx1 - pRx0,
	} {
		if moved < 5000 {
			t.Errorf("%s moved by %d bytes over 5 pings of 1000 bytes; want at least 5000", what, moved)
		}
	}
	if s := after["st-priv"]; s.Network != "private" || s.Counters.RxPackets < 5 || s.Counters.TxPackets < 5 {
		t.Errorf("a sandbox on --network private: %+v; want its network private and at least 5 packets each way", s)
	}
	if s := after["st-none"]; s.Counters != nil || s.Network != "none" {
		t.Errorf("a sandbox on --network none: %+v; want no counters on none", s)
	}
	table := u.ok("stats", "--no-stream").stdout
	for _, re := range []string{
		`(?m)^NAME +NETWORK +RX +TX +DROPS +TCP +UDP$`,
		`(?m)^st-a +statnet +[0-9.]+k?B / \d+ pkts +[0-9.]+k?B / \d+ pkts +\d+`,
		`(?m)^st-priv +private +[0-9.]+k?B / \d+ pkts +[0-9.]+k?B / \d+ pkts +0 +\d+ +\d+$`,
		`(?m)^st-none +none +- +- +- +- +-$`,
	} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("stats --no-stream does not match %s:\n%s", re, table)
		}
	}
	if r := u.ok("stats", "--no-stream", "st-b"); strings.Contains(r.stdout, "st-a") || !strings.Contains(r.stdout, "st-b") {
		t.Errorf("stats st-b:\n%s", r.stdout)
	}
	wantOwnError(t, u.nr("stats", "--no-stream", "nobody"), "stats of a missing sandbox", "nobody")
	// A frame from a stolen address is dropped by the switch and counted.
	u.nr("exec", "st-a", "--", "/bin/sh", "-c", "ip addr add 172.30.0.99/16 dev eth0 && busybox ping -c2 -W1 -I 172.30.0.99 172.30.0.3")
	_, _, aDrops2 := u.jsonStats()["st-a"].counters(t)
	if aDrops2 < aDrops1+2 {
		t.Errorf("st-a's drops went from %d to %d over 2 spoofed pings; want 2 more", aDrops1, aDrops2)
	}
}

// TestMetricsEndpoint: daemon.json's metrics-addr serves Prometheus text
// whose member counters agree with stats, with the Go and process
// collectors' metrics (goroutines, descriptors, RSS under 100 MiB), a
// published port's connections by path and bytes relayed, the network's
// DNS answers (a member's name, an upstream's) and DHCP leases; a
// non-loopback address keeps the daemon from starting, with why in its
// log.
func TestMetricsEndpoint(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	port := freeLoopbackPort(t)
	writeDaemonSettings(t, u, fmt.Sprintf(`{"metrics-addr": "127.0.0.1:%d"}`, port))
	u.ok("network", "create", "--subnet", "172.27.0.0/16", "metnet")
	u.ok("run", "-d", "--name", "met-a", "--network", "metnet", "--", probe, "sleep", "60s")
	const published = "18296"
	u.ok("run", "-d", "--name", "met-b", "--network", "metnet", "-p", published+":80", "--", probe, "serve-tcp", "80")
	u.ok("exec", "met-a", "--", "busybox", "ping", "-c", "3", "-s", "500", "-W", "2", "172.27.0.3")
	rx0, _, _ := u.jsonStats()["met-b"].counters(t)
	fams := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	rx1, _, _ := u.jsonStats()["met-b"].counters(t)
	var got float64
	found := false
	for _, m := range fams["netns_run_member_rx_bytes_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["network"] == "metnet" && labels["member"] == "met-b" {
			got, found = m.GetCounter().GetValue(), true
		}
	}
	if !found || got < float64(rx0) || got > float64(rx1) || rx0 < 1500 {
		t.Errorf("netns_run_member_rx_bytes_total{network=metnet,member=met-b} = %v (found %v); stats said %d before and %d after", got, found, rx0, rx1)
	}
	for _, name := range []string{"netns_run_member_tx_packets_total", "netns_run_member_tcp_connections", "go_memstats_heap_alloc_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("the metrics lack %s", name)
		}
	}
	// The Go and process collectors, under the daemon's syscall filter.
	const mib = 1 << 20
	for name, limit := range map[string]float64{"go_goroutines": 10000, "process_open_fds": 10000, "process_resident_memory_bytes": 100 * mib} {
		if v, ok := gauge(fams, name); !ok || v <= 0 || v >= limit {
			t.Errorf("%s = %v (found %v); want above 0 and below %v", name, v, ok, limit)
		}
	}

	// A loopback client takes the fast path, a world client the gVisor
	// one; each one's bytes are counted once it ends.
	waitTCP(t, "127.0.0.1:"+published)
	const hello = "hello from the world"
	if resp := worldDial(t, "tcp", hostIP+":"+published, hello, 10*time.Second); !strings.HasSuffix(resp.Reply, hello) {
		t.Fatalf("world client of the published port: %q %q", resp.Reply, resp.Error)
	}
	// Names: a member's (answered by the segment) and the world's (by an
	// upstream); a lease: udhcpc in a member, its script printing it.
	u.ok("exec", "met-a", "--", probe, "resolve", "met-b")
	u.ok("exec", "met-a", "--", probe, "resolve", worldName)
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease ip=$ip\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := u.ok("exec", "met-a", "--", "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-s", script); !strings.Contains(r.stdout, "lease ip=172.27.0.2") {
		t.Errorf("udhcpc in met-a:\n%s", r)
	}
	b := map[string]string{"network": "metnet", "member": "met-b", "proto": "tcp"}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	netw := map[string]string{"network": "metnet"}
	atLeast := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"netns_run_member_published_connections_total", with(b, "path", "fast"), 1},
		{"netns_run_member_published_connections_total", with(b, "path", "gvisor"), 1},
		{"netns_run_member_published_bytes_total", with(b, "path", "gvisor", "direction", "in"), float64(len(hello))},
		{"netns_run_member_published_bytes_total", with(b, "path", "gvisor", "direction", "out"), float64(len(hello))},
		{"netns_run_member_published_bytes_total", with(b, "path", "fast", "direction", "in"), 1},
		{"netns_run_dns_queries_total", with(netw, "answer", "local"), 1},
		{"netns_run_dns_queries_total", with(netw, "answer", "upstream"), 1},
		{"netns_run_dns_upstream_failures_total", netw, 0},
		{"netns_run_dhcp_leases_total", netw, 1},
	}
	var vals []float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		fams = scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		vals, found = vals[:0], true
		for _, w := range atLeast {
			v, ok := counterValue(fams, w.name, w.labels)
			vals = append(vals, v)
			found = found && ok && v >= w.min
		}
		if found || time.Now().After(deadline) {
			break
		}
	}
	for i, w := range atLeast {
		if vals[i] < w.min {
			t.Errorf("%s%v = %v; want at least %v", w.name, w.labels, vals[i], w.min)
		}
	}
	// stats shows the same published-port counts.
	var row struct {
		Counters struct {
			Published struct {
				FastTCP   float64 `json:"fast_tcp"`
				GVisorTCP float64 `json:"gvisor_tcp"`
			} `json:"published"`
		}
	}
	if err := json.Unmarshal([]byte(u.ok("stats", "--no-stream", "--format", "json", "met-b").stdout), &row); err != nil {
		t.Fatal(err)
	}
	if p := row.Counters.Published; p.FastTCP != vals[0] || p.GVisorTCP != vals[1] {
		t.Errorf("stats' published connections %+v; the metrics say fast %v, gvisor %v", p, vals[0], vals[1])
	}

	u.cleanup() // the daemon exits after its last member; the next run starts one that reads the settings
	writeDaemonSettings(t, u, fmt.Sprintf(`{"metrics-addr": "0.0.0.0:%d"}`, port))
	if r := u.nr("run", "--network", "metnet", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "daemon.log") {
		t.Errorf("run with a non-loopback metrics-addr: %s; want status 125 pointing at daemon.log", r)
	}
	if b, _ := os.ReadFile(filepath.Join(u.rt, "netns-run", "daemon.log")); !strings.Contains(string(b), "only a loopback address") {
		t.Errorf("daemon.log does not say why 0.0.0.0 was refused:\n%s", b)
	}
}

// TestDaemonLog: with daemon.json's log-level at debug, daemon logs shows
// a member's join, and daemon logs -f streams what comes after it
// started: another join, a port change, the switch's drops (one line per
// member and reason a second, with the count and the frame's addresses)
// and a leave.
func TestDaemonLog(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	writeDaemonSettings(t, u, `{"log-level": "debug"}`)
	u.ok("network", "create", "--subnet", "172.26.0.0/16", "lognet")
	u.ok("run", "-d", "--name", "log-a", "--network", "lognet", "--", probe, "sleep", "60s")
	r := u.ok("daemon", "logs")
	if !regexp.MustCompile(`level=DEBUG msg="member joined" network=lognet member=log-a sandbox=[0-9a-f]{12} ip=172\.26\.0\.2 `).MatchString(r.stdout) {
		t.Errorf("daemon logs shows no join of log-a:\n%s", r.stdout)
	}
	if r := u.ok("daemon", "logs", "--tail", "1"); len(nonEmptyLines(r.stdout)) != 1 {
		t.Errorf("daemon logs --tail 1:\n%s", r.stdout)
	}
	wantOwnError(t, u.nr("daemon", "logs", "--tail", "some"), "a bad --tail", `invalid --tail "some"`)

	p := startCmd(t, cmdOpts{env: u.env}, netnsRun, "daemon", "logs", "-f", "--tail", "0")
	time.Sleep(500 * time.Millisecond) // -f has read the log to its end
	u.ok("run", "-d", "--name", "log-b", "--network", "lognet", "--", probe, "sleep", "60s")
	p.waitLine("stdout", regexp.MustCompile(`msg="member joined" network=lognet member=log-b `))
	u.ok("port", "add", "log-b", "18291:80")
	p.waitLine("stdout", regexp.MustCompile(`msg="ports changed" network=lognet member=log-b .*added=0\.0\.0\.0:18291->80/tcp `))
	u.nr("exec", "log-a", "--", "/bin/sh", "-c", "ip addr add 172.26.0.99/16 dev eth0 && busybox ping -c2 -W1 -I 172.26.0.99 172.26.0.3")
	// The stolen address's ARP requests are dropped (spoofed ARP sender),
	// or its echo requests if a neighbour entry let them out.
	p.waitLine("stdout", regexp.MustCompile(`msg=drop network=lognet member=log-a sandbox=[0-9a-f]{12} reason="spoofed (ARP sender|source IPv4)" count=\d+ .*(arp_sender_ip|src_ip)=172\.26\.0\.99`))
	u.ok("stop", "-t", "1", "log-b")
	p.waitLine("stdout", regexp.MustCompile(`msg="member left" network=lognet member=log-b `))
	if out := p.stdout.String(); strings.Contains(out, `msg="member joined" network=lognet member=log-a `) || strings.Contains(out, "ethswitch: drop") {
		t.Errorf("daemon logs -f --tail 0 printed the log from before it started, or the switch's own drop lines:\n%s", out)
	}
	p.signal(syscall.SIGINT)
	wantExit(t, p.wait(5*time.Second), 0, "daemon logs -f after ctrl-C")
}

// counterValue is the value of the counter name whose labels are labels.
func counterValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		if fmt.Sprint(have) == fmt.Sprint(labels) && m.GetCounter() != nil {
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// gauge is the value of the unlabelled gauge name in fams.
func gauge(fams map[string]*dto.MetricFamily, name string) (float64, bool) {
	ms := fams[name].GetMetric()
	if len(ms) != 1 || ms[0].GetGauge() == nil {
		return 0, false
	}
	return ms[0].GetGauge().GetValue(), true
}

// writeDaemonSettings writes the user's daemon.json, read by the next
// daemon to start.
func writeDaemonSettings(t *testing.T, u *user, body string) {
	t.Helper()
	dir := filepath.Join(strings.TrimPrefix(u.env[0], "HOME="), ".config", "netns-run")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeLoopbackPort is a TCP port free on 127.0.0.1 a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// scrape GETs url and parses the Prometheus text it returns.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", url, resp.Status, err, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the metrics: %v\n%s", err, body)
	}
	return fams
}
