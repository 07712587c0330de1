package runner

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/netns-run/netns-run/forward"
)

// TestLinkVars: docker run -d --name lnk-db -e FOO=bar -e PATH=/bin -p
// 18997:80 -p 18996:53/udp IMAGE; docker run --link lnk-db:my-db IMAGE env
// (a Docker engine's output, sorted, but for its own HOME, HOSTNAME, PATH).
func TestLinkVars(t *testing.T) {
	got := linkVars("my-db", "busy_goodall", netip.MustParseAddr("172.17.0.2"), []forward.Mapping{
		{HostPort: 18997, ContainerPort: 80, Proto: forward.TCP},
		{HostPort: 18996, ContainerPort: 53, Proto: forward.UDP},
	}, []string{"FOO=bar", "PATH=/bin"})
	want := []string{
		"MY_DB_ENV_FOO=bar",
		"MY_DB_NAME=/busy_goodall/my-db",
		"MY_DB_PORT=udp://172.17.0.2:53",
		"MY_DB_PORT_53_UDP=udp://172.17.0.2:53",
		"MY_DB_PORT_53_UDP_ADDR=172.17.0.2",
		"MY_DB_PORT_53_UDP_PORT=53",
		"MY_DB_PORT_53_UDP_PROTO=udp",
		"MY_DB_PORT_80_TCP=tcp://172.17.0.2:80",
		"MY_DB_PORT_80_TCP_ADDR=172.17.0.2",
		"MY_DB_PORT_80_TCP_PORT=80",
		"MY_DB_PORT_80_TCP_PROTO=tcp",
	}
	sorted := slices.Sorted(slices.Values(got))
	if strings.Join(sorted, "\n") != strings.Join(want, "\n") {
		t.Errorf("linkVars =\n%s\nwant\n%s", strings.Join(sorted, "\n"), strings.Join(want, "\n"))
	}
	if got[0] != "MY_DB_PORT=udp://172.17.0.2:53" {
		t.Errorf("the default port first: %q", got[0])
	}
	// TCP first where a number has both.
	got = linkVars("w", "s", netip.MustParseAddr("172.17.0.3"), []forward.Mapping{
		{ContainerPort: 80, Proto: forward.UDP}, {ContainerPort: 80, Proto: forward.TCP},
	}, nil)
	if got[0] != "W_PORT=tcp://172.17.0.3:80" {
		t.Errorf("default port of 80/udp and 80/tcp: %q", got[0])
	}
}
