package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/stack/segment"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The daemon's Prometheus endpoint (daemon --metrics, daemon.json's
// metrics-addr): each running segment's member counters, as stats shows
// them, their published ports' connections and relayed bytes by path, each
// network's DNS answers and drops and DHCP replies, and the Go and process
// collectors (goroutines, RSS, descriptors).

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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &segmentCollector{s})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
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

// The member metrics, labelled by network and member (the sandbox's name).
var (
	memberLabels   = []string{"network", "member"}
	rxBytesDesc    = prometheus.NewDesc("netns_run_member_rx_bytes_total", "Bytes the switch wrote to the member (Ethernet headers included).", memberLabels, nil)
	rxPacketsDesc  = prometheus.NewDesc("netns_run_member_rx_packets_total", "Frames the switch wrote to the member.", memberLabels, nil)
	txBytesDesc    = prometheus.NewDesc("netns_run_member_tx_bytes_total", "Bytes the member sent into the switch (Ethernet headers included).", memberLabels, nil)
	txPacketsDesc  = prometheus.NewDesc("netns_run_member_tx_packets_total", "Frames the member sent into the switch.", memberLabels, nil)
	dropsDesc      = prometheus.NewDesc("netns_run_member_drops_total", "The member's frames the switch dropped, and frames toward it it could not write, by reason; also its DHCP messages and DNS queries over their rates.", append(memberLabels, "reason"), nil)
	tcpDesc        = prometheus.NewDesc("netns_run_member_tcp_connections", "The member's TCP connections open in the gateway's stack.", memberLabels, nil)
	udpDesc        = prometheus.NewDesc("netns_run_member_udp_flows", "The member's UDP flows open in the gateway's stack.", memberLabels, nil)
	natRefusedDesc = prometheus.NewDesc("netns_run_member_nat_refused_total", "The member's connections the NAT refused: no route (where it does not go) or capped (at the gateway's limits).", append(memberLabels, "reason"), nil)
	publishedDesc  = prometheus.NewDesc("netns_run_member_published_connections_total", "Connections (UDP: flows) of the member's published ports, by the path they took: fast (a kernel socket in the member's namespace, for loopback clients) or gvisor (through the gateway's stack).", append(memberLabels, "proto", "path"), nil)
	relayedDesc    = prometheus.NewDesc("netns_run_member_published_bytes_total", "Bytes relayed through the member's published ports: in (from clients to the member) and out, by path.", append(memberLabels, "proto", "path", "direction"), nil)
)

// The network metrics, labelled by network: its DNS and DHCP.
var (
	networkLabels   = []string{"network"}
	dnsQueriesDesc  = prometheus.NewDesc("netns_run_dns_queries_total", "DNS queries the network's resolver answered: local (a member's name), upstream (an upstream's reply) or servfail (no upstream answered).", append(networkLabels, "answer"), nil)
	dnsUpstreamDesc = prometheus.NewDesc("netns_run_dns_upstream_failures_total", "Tries of one upstream resolver that failed (timeout, network error, bad reply, SERVFAIL, REFUSED).", networkLabels, nil)
	dnsDroppedDesc  = prometheus.NewDesc("netns_run_dns_dropped_total", "DNS queries dropped unanswered: over the client's rate, or busy (too many in flight).", append(networkLabels, "reason"), nil)
	dhcpLeasesDesc  = prometheus.NewDesc("netns_run_dhcp_leases_total", "DHCP leases handed out or renewed (ACKs with a lease).", networkLabels, nil)
	dhcpRepliesDesc = prometheus.NewDesc("netns_run_dhcp_replies_total", "DHCP replies sent, by type: offer, ack, nak, inform (an ACK of an INFORM).", append(networkLabels, "type"), nil)
	segmentDescs    = []*prometheus.Desc{rxBytesDesc, rxPacketsDesc, txBytesDesc, txPacketsDesc, dropsDesc, tcpDesc, udpDesc, natRefusedDesc,
		publishedDesc, relayedDesc, dnsQueriesDesc, dnsUpstreamDesc, dnsDroppedDesc, dhcpLeasesDesc, dhcpRepliesDesc}
)

// segmentCollector reads the counters of the running segments at each
// scrape.
type segmentCollector struct{ s *Server }

func (c *segmentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range segmentDescs {
		ch <- d
	}
}

func (c *segmentCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.s.runningNetworks() {
		st := r.seg.Stats()
		for _, m := range st.Members {
			collectMember(ch, r.n.Name, m)
		}
		collectNetwork(ch, r.n.Name, st)
	}
}

func collectMember(ch chan<- prometheus.Metric, network string, m segment.MemberStats) {
	counter := func(d *prometheus.Desc, v uint64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{network, m.Name}, extra...)...)
	}
	counter(rxBytesDesc, m.RxBytes)
	counter(rxPacketsDesc, m.RxPackets)
	counter(txBytesDesc, m.TxBytes)
	counter(txPacketsDesc, m.TxPackets)
	for reason, v := range m.Drops {
		counter(dropsDesc, v, reason)
	}
	counter(natRefusedDesc, m.NoRoute, "no route")
	counter(natRefusedDesc, m.Capped, "capped")
	ch <- prometheus.MustNewConstMetric(tcpDesc, prometheus.GaugeValue, float64(m.TCP), network, m.Name)
	ch <- prometheus.MustNewConstMetric(udpDesc, prometheus.GaugeValue, float64(m.UDP), network, m.Name)
	traffic := func(proto string, path forward.Path, t forward.Traffic) {
		counter(publishedDesc, t.Connections, proto, path.String())
		counter(relayedDesc, t.BytesIn, proto, path.String(), "in")
		counter(relayedDesc, t.BytesOut, proto, path.String(), "out")
	}
	traffic("tcp", forward.Fast, m.Published.TCP[forward.Fast])
	traffic("tcp", forward.GVisor, m.Published.TCP[forward.GVisor])
	traffic("udp", forward.GVisor, m.Published.UDP)
}

func collectNetwork(ch chan<- prometheus.Metric, network string, st segment.Stats) {
	counter := func(d *prometheus.Desc, v uint64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{network}, extra...)...)
	}
	counter(dnsQueriesDesc, st.DNS.Local, "local")
	counter(dnsQueriesDesc, st.DNS.Forwarded, "upstream")
	counter(dnsQueriesDesc, st.DNS.Failed, "servfail")
	counter(dnsUpstreamDesc, st.DNS.UpstreamErrors)
	var rated uint64
	for _, n := range st.DNS.RateLimited {
		rated += n
	}
	counter(dnsDroppedDesc, rated, "rate")
	counter(dnsDroppedDesc, st.DNS.Busy, "busy")
	counter(dhcpLeasesDesc, st.DHCP.Acks)
	counter(dhcpRepliesDesc, st.DHCP.Offers, "offer")
	counter(dhcpRepliesDesc, st.DHCP.Acks, "ack")
	counter(dhcpRepliesDesc, st.DHCP.Naks, "nak")
	counter(dhcpRepliesDesc, st.DHCP.InformAcks, "inform")
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
