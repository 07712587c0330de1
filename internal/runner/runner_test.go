package runner

import (
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/tap"
)

func TestCleanupsUnwindInReverseOnce(t *testing.T) {
	var c cleanups
	var got []int
	for i := range 3 {
		c.push(func() { got = append(got, i) })
	}
	c.unwind()
	c.unwind()
	if want := []int{2, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("unwound %v; want %v, each once", got, want)
	}
}

func TestCleanupsPushedWhileUnwinding(t *testing.T) {
	// A release that pushes another (a path torn down midway) still has
	// it run, after it.
	var c cleanups
	var got []string
	c.push(func() { got = append(got, "first") })
	c.push(func() {
		got = append(got, "second")
		c.push(func() { got = append(got, "late") })
	})
	c.unwind()
	if want := []string{"second", "late", "first"}; !slices.Equal(got, want) {
		t.Fatalf("unwound %v; want %v", got, want)
	}
}

var (
	testGateway = netip.MustParseAddr("172.17.0.1")
	testMember  = netip.MustParseAddr("172.17.0.2")
)

func testPlacement() placement {
	mac, _ := net.ParseMAC("02:42:ac:11:00:02")
	gwMAC, _ := net.ParseMAC("02:42:ac:11:00:01")
	return placement{
		ip: testMember, prefix: netip.MustParsePrefix("172.17.0.0/16"), gateway: testGateway,
		nameservers: []netip.Addr{testGateway}, mac: mac, gwMAC: gwMAC, linkMode: tap.ModeTAP,
		extra: []hosts.Entry{{IP: netip.MustParseAddr("172.17.0.3"), Names: []string{"db", "0123456789ab"}}},
	}
}

func TestSpecHosts(t *testing.T) {
	r := &run{hostname: "box", opts: Options{AddHosts: []AddHost{
		{Name: "static", IP: netip.MustParseAddr("192.0.2.7")},
		{Name: "host.docker.internal", HostGateway: true},
	}}}
	got := string(r.spec(testPlacement()).Files["/etc/hosts"])
	// Docker's order: --add-host lines, then --link lines, then the
	// sandbox's own line; host-gateway is the gateway.
	want := "192.0.2.7\tstatic\n172.17.0.1\thost.docker.internal\n172.17.0.3\tdb 0123456789ab\n172.17.0.2\tbox\n"
	if !strings.HasSuffix(got, want) {
		t.Fatalf("/etc/hosts:\n%s\nwant it to end with:\n%s", got, want)
	}
	if got := string(r.spec(testPlacement()).Files["/etc/hostname"]); got != "box\n" {
		t.Errorf("/etc/hostname: %q", got)
	}
}

func TestSpecResolvConf(t *testing.T) {
	p := testPlacement()
	r := &run{hostname: "box", opts: Options{DNSSearch: []string{"example.test"}, DNSOptions: []string{"ndots:2"}}}
	want := "nameserver 172.17.0.1\nsearch example.test\noptions ndots:2\n"
	if got := string(r.spec(p).Files["/etc/resolv.conf"]); got != want {
		t.Errorf("resolv.conf with the network's resolver: %q; want %q", got, want)
	}
	r.opts.DNS = []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("192.0.2.54")}
	want = "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch example.test\noptions ndots:2\n"
	if got := string(r.spec(p).Files["/etc/resolv.conf"]); got != want {
		t.Errorf("resolv.conf with --dns: %q; want %q", got, want)
	}
	p.nameservers = nil
	r.opts.DNS = nil
	if got := string(r.spec(p).Files["/etc/resolv.conf"]); got != "search example.test\noptions ndots:2\n" {
		t.Errorf("resolv.conf with no resolver: %q", got)
	}
}

func TestSpecLink(t *testing.T) {
	r := &run{hostname: "box", opts: Options{MTU: 65520, LinkMode: tap.ModePacket}}
	p := testPlacement()
	link := r.spec(p).Link
	if link == nil {
		t.Fatal("no eth0 for a placement with an address")
	}
	want := tap.Config{
		Name: "eth0", Mode: tap.ModeTAP, MTU: 65520, MAC: "02:42:ac:11:00:02", PeerMAC: "02:42:ac:11:00:01",
		Address: netip.MustParsePrefix("172.17.0.2/16"), Gateway: testGateway,
		NoIPv6: true, // an IPv4-only placement
	}
	if !reflect.DeepEqual(*link, want) {
		t.Errorf("eth0 %+v; want %+v (the placement's link mode, not the asked one)", *link, want)
	}
	p.kernel = true
	if r.spec(p).Link != nil {
		t.Error("a kernel macvlan's eth0 is adopted later, not made by the agent")
	}
	if r.spec(placement{}).Link != nil {
		t.Error("--network none has no eth0")
	}
}

func TestSandboxPorts(t *testing.T) {
	got := sandboxPorts([]forward.HostForward{{SandboxPort: 5432, HostPort: 15432}, {SandboxPort: 6379, HostPort: 6379}})
	if want := []uint16{5432, 6379}; !slices.Equal(got, want) {
		t.Errorf("sandbox ports %v; want %v", got, want)
	}
	if got := sandboxPorts(nil); len(got) != 0 {
		t.Errorf("no -T: %v", got)
	}
}

func TestUpstreams(t *testing.T) {
	asked := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:5353")}
	if got, err := upstreams(asked); err != nil || !slices.Equal(got, asked) {
		t.Errorf("asked upstreams: %v %v; want %v", got, err, asked)
	}
	got, err := upstreams(nil)
	if err != nil || len(got) == 0 {
		t.Fatalf("the host's upstreams: %v %v; want at least one", got, err)
	}
	for _, up := range got {
		if up.Port() != 53 {
			t.Errorf("host upstream %v: want port 53", up)
		}
	}
}

func TestChangePortsOffSharedNetwork(t *testing.T) {
	r := &run{name: "web", opts: Options{Network: None}}
	_, err := r.changePorts([]forward.Mapping{{ContainerPort: 80, HostPort: 8080, Proto: "tcp"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "not on a shared network (it runs on none)") {
		t.Errorf("port add on --network none: %v", err)
	}
}
