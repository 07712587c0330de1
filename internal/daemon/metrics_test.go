package daemon

import (
	"bytes"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/stack/segment"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The series parse with Prometheus's own text parser, typed (counters as
// counters, gauges as gauges), each family once, label values escaped,
// and the process's own metrics beside them.
func TestMetricsParseAsPrometheusText(t *testing.T) {
	metrics.ExposeMetadata(true)
	set := metrics.NewSet()
	m := segment.MemberStats{TCP: 3}
	m.Name, m.RxBytes, m.Drops = `odd"name\x`, 1500, map[string]uint64{"spoofed source": 2, "vlan tagged": 1}
	m.Published.TCP[forward.Fast] = forward.Traffic{Connections: 4, BytesIn: 10, BytesOut: 20}
	memberSeries(set, "net1", m)
	var other segment.MemberStats
	other.Name, other.RxBytes = "other", 7
	memberSeries(set, "net1", other)
	networkSeries(set, "net1", segment.Stats{})
	var b bytes.Buffer
	set.WritePrometheus(&b)
	metrics.WriteProcessMetrics(&b)
	metrics.WriteFDMetrics(&b)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("parsing: %v\n%s", err, b.String())
	}
	value := func(family string, typ dto.MetricType, labels map[string]string) (float64, bool) {
		f := fams[family]
		if f.GetType() != typ {
			t.Errorf("%s is a %v; want a %v", family, f.GetType(), typ)
		}
	next:
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			if typ == dto.MetricType_COUNTER {
				return s.GetCounter().GetValue(), true
			}
			return s.GetGauge().GetValue(), true
		}
		return 0, false
	}
	for _, c := range []struct {
		family string
		typ    dto.MetricType
		labels map[string]string
		want   float64
	}{
		{"netns_run_member_rx_bytes_total", dto.MetricType_COUNTER, map[string]string{"network": "net1", "member": `odd"name\x`}, 1500},
		{"netns_run_member_rx_bytes_total", dto.MetricType_COUNTER, map[string]string{"member": "other"}, 7},
		{"netns_run_member_drops_total", dto.MetricType_COUNTER, map[string]string{"member": `odd"name\x`, "reason": "spoofed source"}, 2},
		{"netns_run_member_tcp_connections", dto.MetricType_GAUGE, map[string]string{"member": `odd"name\x`}, 3},
		{"netns_run_member_published_bytes_total", dto.MetricType_COUNTER, map[string]string{"path": "fast", "direction": "out"}, 20},
		{"netns_run_dhcp_replies_total", dto.MetricType_COUNTER, map[string]string{"type": "offer"}, 0},
	} {
		if got, ok := value(c.family, c.typ, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v); want %v", c.family, c.labels, got, ok, c.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_open_fds", "go_memstats_heap_alloc_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("the process's own metrics lack %s", name)
		}
	}
}
