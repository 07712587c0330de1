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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The daemon's Prometheus endpoint (daemon --metrics, daemon.json's
// metrics-addr): each running segment's member counters, as stats shows
// them, and the Go and process collectors (goroutines, RSS, descriptors).

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
	dropsDesc      = prometheus.NewDesc("netns_run_member_drops_total", "The member's frames the switch dropped, and frames toward it it could not write, by reason.", append(memberLabels, "reason"), nil)
	tcpDesc        = prometheus.NewDesc("netns_run_member_tcp_connections", "The member's TCP connections open in the gateway's stack.", memberLabels, nil)
	udpDesc        = prometheus.NewDesc("netns_run_member_udp_flows", "The member's UDP flows open in the gateway's stack.", memberLabels, nil)
	natRefusedDesc = prometheus.NewDesc("netns_run_member_nat_refused_total", "The member's connections the NAT refused: no route (where it does not go) or capped (at the gateway's limits).", append(memberLabels, "reason"), nil)
)

// segmentCollector reads the counters of the running segments at each
// scrape.
type segmentCollector struct{ s *Server }

func (c *segmentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rxBytesDesc, rxPacketsDesc, txBytesDesc, txPacketsDesc, dropsDesc, tcpDesc, udpDesc, natRefusedDesc} {
		ch <- d
	}
}

func (c *segmentCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.s.networkStats() {
		for _, m := range n.Members {
			counter := func(d *prometheus.Desc, v uint64, extra ...string) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{n.Network, m.Name}, extra...)...)
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
			ch <- prometheus.MustNewConstMetric(tcpDesc, prometheus.GaugeValue, float64(m.TCP), n.Network, m.Name)
			ch <- prometheus.MustNewConstMetric(udpDesc, prometheus.GaugeValue, float64(m.UDP), n.Network, m.Name)
		}
	}
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
