package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/stack/segment"
)

// The daemon's Prometheus endpoint (daemon --metrics, daemon.json's
// metrics-addr): each running segment's member counters, as stats shows
// them, their published ports' connections and relayed bytes by path, each
// network's DNS answers and drops and DHCP replies, and the process's own
// (goroutines, RSS, descriptors). Written by VictoriaMetrics' package, not
// Prometheus's client, which cost every process linking this one 3.5 MB
// of binary and 1 ms of package initialisation.

// MetricsEndpoint is a metrics address taken apart: a loopback TCP
// address or a unix socket's path.
type MetricsEndpoint struct {
	Network string // "tcp" or "unix"
	Addr    string
}

// ParseMetricsAddr takes a loopback host:port (localhost, 127.0.0.1,
// [::1]) or a unix socket's absolute path (also as unix:///path). The
// counters name every sandbox of the user, so they are not served to the
// network.
func ParseMetricsAddr(addr string) (MetricsEndpoint, error) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok || strings.HasPrefix(addr, "/") {
		if !ok {
			p = addr
		}
		if !filepath.IsAbs(p) {
			return MetricsEndpoint{}, fmt.Errorf("metrics address %q: a unix socket's path must be absolute", addr)
		}
		return MetricsEndpoint{Network: "unix", Addr: filepath.Clean(p)}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return MetricsEndpoint{}, fmt.Errorf("metrics address %q: want HOST:PORT on loopback or a unix socket's absolute path: %v", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return MetricsEndpoint{}, fmt.Errorf("metrics address %q: only a loopback address (127.0.0.1:PORT, [::1]:PORT, localhost:PORT) or a unix socket's absolute path, as the metrics name every sandbox of the user", addr)
	}
	return MetricsEndpoint{Network: "tcp", Addr: net.JoinHostPort(host, port)}, nil
}

// serveMetrics serves the metrics at addr (none when it is empty) until
// the returned stop is called.
func (s *Server) serveMetrics(addr string) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ep, err := ParseMetricsAddr(addr)
	if err != nil {
		return nil, err
	}
	if ep.Network == "unix" {
		os.Remove(ep.Addr) // a socket left by a daemon that was killed
	}
	ln, err := net.Listen(ep.Network, ep.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if ep.Network == "unix" {
		if err := os.Chmod(ep.Addr, 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	metrics.ExposeMetadata(true) // TYPE lines: Prometheus then knows counters from gauges
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.writeMetrics(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("metrics endpoint", "err", err)
		}
	}()
	s.log.Info("serving metrics", "addr", ep.Network+":"+ep.Addr)
	return func() {
		srv.Close()
		if ep.Network == "unix" {
			os.Remove(ep.Addr)
		}
	}, nil
}

// writeMetrics writes, in Prometheus's text format, each running
// segment's counters as stats shows them, read now, and the process's
// own (the Go runtime's, RSS, descriptors). The series are made afresh
// for each scrape: members come and go. What each means:
// docs/ARCHITECTURE.md, Metrics.
func (s *Server) writeMetrics(w io.Writer) {
	set := metrics.NewSet()
	for _, r := range s.runningNetworks() {
		st := r.seg.Stats()
		for _, m := range st.Members {
			memberSeries(set, r.n.Name, m)
		}
		networkSeries(set, r.n.Name, st)
	}
	set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
	metrics.WriteFDMetrics(w)
}

// series names a series: a family and its labels, as name/value pairs.
func series(family string, labels ...string) string {
	var b strings.Builder
	b.WriteString(family)
	b.WriteByte('{')
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		labelEscaper.WriteString(&b, labels[i+1])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// labelEscaper escapes a label value as the text format wants it.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func memberSeries(set *metrics.Set, network string, m segment.MemberStats) {
	counter := func(family string, v uint64, extra ...string) {
		set.GetOrCreateCounter(series(family, append([]string{"network", network, "member", m.Name}, extra...)...)).Set(v)
	}
	gauge := func(family string, v int) {
		set.GetOrCreateGauge(series(family, "network", network, "member", m.Name), nil).Set(float64(v))
	}
	counter("netns_run_member_rx_bytes_total", m.RxBytes)
	counter("netns_run_member_rx_packets_total", m.RxPackets)
	counter("netns_run_member_tx_bytes_total", m.TxBytes)
	counter("netns_run_member_tx_packets_total", m.TxPackets)
	for reason, v := range m.Drops {
		counter("netns_run_member_drops_total", v, "reason", reason)
	}
	counter("netns_run_member_nat_refused_total", m.NoRoute, "reason", "no route")
	counter("netns_run_member_nat_refused_total", m.Capped, "reason", "capped")
	gauge("netns_run_member_tcp_connections", m.TCP)
	gauge("netns_run_member_udp_flows", m.UDP)
	traffic := func(proto string, path forward.Path, t forward.Traffic) {
		counter("netns_run_member_published_connections_total", t.Connections, "proto", proto, "path", path.String())
		counter("netns_run_member_published_bytes_total", t.BytesIn, "proto", proto, "path", path.String(), "direction", "in")
		counter("netns_run_member_published_bytes_total", t.BytesOut, "proto", proto, "path", path.String(), "direction", "out")
	}
	traffic("tcp", forward.Fast, m.Published.TCP[forward.Fast])
	traffic("tcp", forward.GVisor, m.Published.TCP[forward.GVisor])
	traffic("udp", forward.GVisor, m.Published.UDP)
}

func networkSeries(set *metrics.Set, network string, st segment.Stats) {
	counter := func(family string, v uint64, extra ...string) {
		set.GetOrCreateCounter(series(family, append([]string{"network", network}, extra...)...)).Set(v)
	}
	counter("netns_run_dns_queries_total", st.DNS.Local, "answer", "local")
	counter("netns_run_dns_queries_total", st.DNS.Forwarded, "answer", "upstream")
	counter("netns_run_dns_queries_total", st.DNS.Failed, "answer", "servfail")
	counter("netns_run_dns_upstream_failures_total", st.DNS.UpstreamErrors)
	var rated uint64
	for _, n := range st.DNS.RateLimited {
		rated += n
	}
	counter("netns_run_dns_dropped_total", rated, "reason", "rate")
	counter("netns_run_dns_dropped_total", st.DNS.Busy, "reason", "busy")
	counter("netns_run_dhcp_leases_total", st.DHCP.Acks)
	counter("netns_run_dhcp_replies_total", st.DHCP.Offers, "type", "offer")
	counter("netns_run_dhcp_replies_total", st.DHCP.Acks, "type", "ack")
	counter("netns_run_dhcp_replies_total", st.DHCP.Naks, "type", "nak")
	counter("netns_run_dhcp_replies_total", st.DHCP.InformAcks, "type", "inform")
}

// ConfiguredMetricsAddr is the settings' metrics-addr (empty: none).
func ConfiguredMetricsAddr() (string, error) {
	path, err := SettingsPath()
	if err != nil {
		return "", err
	}
	s, err := LoadSettings(path)
	return s.MetricsAddr, err
}
