package forward

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzPortSpecs feeds one string to both port grammars, -p (ParseSpec) and
// -T (ParseHostForwards): a refusal is a one-line error, and what is taken
// reads back the same when written out in the grammar again.
func FuzzPortSpecs(f *testing.F) {
	for _, s := range []string{
		"80", "8080:80", "53/udp", "127.0.0.1:8080:80", "[::1]:8080:80", "::1:8080:80",
		"[fe80::1%eth0]:8080:80", "0.0.0.0::80-81/UDP", "8000-8010:80", "8000-8001:80-81",
		"1-65535", "65535:1", "22,80:8080", "1000-1001:2000", "65530-65535:65534",
		"", ":", "80/", "[::1", "1.2.3.4:5:6:7", "80-79", "0", "99999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		checkPublishSpec(t, spec)
		checkHostForwardSpec(t, spec)
	})
}

func checkPublishSpec(t *testing.T, spec string) {
	ms, err := ParseSpec(spec)
	if err != nil {
		if len(ms) != 0 || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), specForm) {
			t.Fatalf("ParseSpec(%q): %d mappings with error %q, want none and a one-line error showing the grammar", spec, len(ms), err)
		}
		return
	}
	if len(ms) == 0 || len(ms) > 65535 {
		t.Fatalf("ParseSpec(%q) = %d mappings", spec, len(ms))
	}
	for i, m := range ms {
		if m.ContainerPort == 0 || (m.Proto != TCP && m.Proto != UDP) ||
			(m.HostPortEnd != 0 && (m.HostPort == 0 || m.HostPortEnd < m.HostPort)) {
			t.Fatalf("ParseSpec(%q) took a bad mapping %+v", spec, m)
		}
		if i >= 64 && i < len(ms)-64 {
			continue // a long range: its ends are enough
		}
		again, err := ParseSpec(publishSpecOf(m))
		if err != nil || !slices.Equal(again, []Mapping{m}) {
			t.Fatalf("ParseSpec(%q) gave %+v, but its spec %q reads back as %+v, %v", spec, m, publishSpecOf(m), again, err)
		}
		if s := m.String(); strings.ContainsAny(s, "\n\r") {
			t.Fatalf("Mapping.String() = %q", s)
		}
	}
	if len(ms) > 1024 {
		return // FormatPorts of a long range is right but slow for a fuzz loop
	}
	if s := FormatPorts(ms); strings.ContainsAny(s, "\n\r") {
		t.Fatalf("FormatPorts = %q", s)
	}
}

// publishSpecOf writes m in -p's grammar. An IPv6 address is bracketed,
// unless its zone holds a ']' (then only the bare form reads back).
func publishSpecOf(m Mapping) string {
	var b strings.Builder
	if m.HostIP.IsValid() {
		ip := m.HostIP.String()
		if m.HostIP.Is6() && !strings.Contains(m.HostIP.Zone(), "]") {
			ip = "[" + ip + "]"
		}
		b.WriteString(ip + ":")
	}
	if m.HostPort != 0 {
		b.WriteString(strconv.Itoa(int(m.HostPort)))
		if m.HostPortEnd != 0 {
			b.WriteString("-" + strconv.Itoa(int(m.HostPortEnd)))
		}
	}
	if b.Len() > 0 {
		b.WriteString(":")
	}
	b.WriteString(strconv.Itoa(int(m.ContainerPort)) + "/" + string(m.Proto))
	return b.String()
}

func checkHostForwardSpec(t *testing.T, spec string) {
	fs, err := ParseHostForwards([]string{spec})
	if err != nil {
		if len(fs) != 0 || strings.Contains(err.Error(), "\n") {
			t.Fatalf("ParseHostForwards(%q): %d forwards with error %q, want none and a one-line error", spec, len(fs), err)
		}
		return
	}
	seen := map[uint16]bool{}
	items := make([]string, 0, len(fs))
	for _, fw := range fs {
		if fw.SandboxPort == 0 || fw.HostPort == 0 || seen[fw.SandboxPort] {
			t.Fatalf("ParseHostForwards(%q) took a bad or repeated forward %+v", spec, fw)
		}
		seen[fw.SandboxPort] = true
		if len(items) < 1024 {
			items = append(items, fw.String())
		}
	}
	if len(fs) > 1024 {
		return // reading a long range back is right but slow for a fuzz loop
	}
	written := strings.Join(items, ",")
	again, err := ParseHostForwards([]string{written})
	if err != nil || !slices.Equal(again, fs) {
		t.Fatalf("ParseHostForwards(%q) = %v, but written out as %q it reads back as %v, %v", spec, fs, written, again, err)
	}
}
