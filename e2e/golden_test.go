package e2e

import (
	"embed"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
)

// updateGolden rewrites the golden files from this run's masked output
// instead of comparing. The test user must be able to write the source
// tree, e.g. as the checkout's owner:
// bin/outerns -- bin/e2e.test -test.run TestWalkthrough -update-golden
var updateGolden = flag.Bool("update-golden", false, "rewrite e2e/testdata/walkthrough/*.golden from this run's output")

// goldenFiles is embedded: the suite runs a copy of the test binary, as
// another user, far from the checkout.
//
//go:embed testdata/walkthrough
var goldenFiles embed.FS

const goldenDir = "testdata/walkthrough"

// checkGolden compares got with goldenDir/NAME.golden and reports a line
// diff, or rewrites the file under -update-golden.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	file := name + ".golden"
	if *updateGolden {
		_, src, _, _ := runtime.Caller(0)
		path := filepath.Join(filepath.Dir(src), goldenDir, file)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatalf("-update-golden: %v (run the test as a user who can write the checkout)", err)
		}
		return
	}
	want, err := goldenFiles.ReadFile(goldenDir + "/" + file)
	if err != nil {
		t.Errorf("%s: no golden file (%v); run with -update-golden, then check it against what Docker prints", name, err)
		return
	}
	if string(want) != got {
		t.Errorf("%s differs from %s/%s (- golden, + got):\n%s", name, goldenDir, file, lineDiff(string(want), got))
	}
}

// lineDiff is a unified-style diff of two texts, line by line, from their
// longest common subsequence (the texts are short).
func lineDiff(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			fmt.Fprintf(&out, "  %q\n", a[i])
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			fmt.Fprintf(&out, "- %q\n", a[i])
			i++
		default:
			fmt.Fprintf(&out, "+ %q\n", b[j])
			j++
		}
	}
	return out.String()
}

// masker replaces what differs from run to run by placeholders, so that
// the rest can be compared byte for byte:
//   - the ids of the sandboxes it was told about: <id:NAME> (64 hex
//     digits) and <short-id:NAME> (the first 12), which keeps it checked
//     that the right sandbox's id is in the right place;
//   - any other 64- or 12-hex-digit id (networks): <id>;
//   - timestamps: <time>; ps's "N seconds ago": <created>, "Up N
//     seconds": Up <uptime>;
//   - ping's round-trip times: <ms>;
//   - ip's "tentative" flag on an IPv6 address: it is there until duplicate
//     address detection ends, a second or so after eth0 came up.
type masker struct {
	sandboxes []sandboxID // in the order learned
}

type sandboxID struct{ name, id string }

func newMasker() *masker { return &masker{} }

// learn records the id of the sandbox NAME.
func (m *masker) learn(name, id string) {
	m.sandboxes = append(m.sandboxes, sandboxID{name, id})
}

var (
	longIDRE  = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	shortIDRE = regexp.MustCompile(`\b[0-9a-f]{12}\b`)
	timeRE    = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	createdRE = regexp.MustCompile(`\b(\d+|About an?|Less than a) (second|minute|hour)s? ago\b`)
	uptimeRE  = regexp.MustCompile(`\bUp (\d+|About an?|Less than a) (second|minute|hour)s?\b`)
	pingMsRE  = regexp.MustCompile(`\d+\.\d+ ms\b|\d+\.\d+/\d+\.\d+/\d+\.\d+ ms\b`)
	msRE      = regexp.MustCompile(`\d+\.\d+`)
	dadRE     = regexp.MustCompile(`(scope \w+) tentative `)
)

func (m *masker) mask(s string) string {
	for _, sb := range m.sandboxes {
		s = strings.ReplaceAll(s, sb.id, "<id:"+sb.name+">")
		s = shortIDRE.ReplaceAllStringFunc(s, func(w string) string {
			if w == sb.id[:12] {
				return "<short-id:" + sb.name + ">"
			}
			return w
		})
	}
	s = longIDRE.ReplaceAllString(s, "<id>")
	s = shortIDRE.ReplaceAllString(s, "<id>")
	s = timeRE.ReplaceAllString(s, "<time>")
	s = createdRE.ReplaceAllString(s, "<created>")
	s = uptimeRE.ReplaceAllString(s, "Up <uptime>")
	s = dadRE.ReplaceAllString(s, "$1 ")
	return pingMsRE.ReplaceAllStringFunc(s, func(w string) string { return msRE.ReplaceAllString(w, "<ms>") })
}

// maskTable masks each cell of a table printed in Docker's columns (a
// cell starts where its heading starts; headings are three spaces apart
// at least) and lays the columns out again as Docker does, since masking
// changes the widths.
func maskTable(s string, mask func(string) string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	starts := []int{0}
	for _, loc := range regexp.MustCompile(`   +`).FindAllStringIndex(lines[0], -1) {
		starts = append(starts, loc[1])
	}
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 8, 3, ' ', 0)
	for _, line := range lines {
		l := []rune(line) // Docker's columns count runes: ps cuts commands with "…"
		cells := make([]string, len(starts))
		for i, at := range starts {
			end := len(l)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(l))
			}
			if at < end {
				cells[i] = mask(strings.TrimSpace(string(l[at:end])))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	return out.String()
}

// sortEntries sorts the entries of the JSON object "KEY": {...} in text
// indented as Docker's inspect is (each entry a nested object starting on
// a line of its own). A network's Containers are keyed by sandbox id, so
// their order changes from run to run even once the ids are masked.
func sortEntries(s, key string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != `"`+key+`": {` {
			continue
		}
		outer := l[:len(l)-len(strings.TrimLeft(l, " "))]
		inner := outer + "    "
		var entries [][]string
		j := i + 1
		for ; j < len(lines) && strings.HasPrefix(lines[j], inner); j++ {
			if strings.HasPrefix(lines[j], inner+`"`) {
				entries = append(entries, nil)
			}
			if len(entries) > 0 {
				entries[len(entries)-1] = append(entries[len(entries)-1], lines[j])
			}
		}
		for _, e := range entries {
			e[len(e)-1] = strings.TrimSuffix(e[len(e)-1], ",")
		}
		sort.Slice(entries, func(a, b int) bool { return entries[a][0] < entries[b][0] })
		var body []string
		for n, e := range entries {
			if n < len(entries)-1 {
				e[len(e)-1] += ","
			}
			body = append(body, e...)
		}
		return strings.Join(append(append(lines[:i+1:i+1], body...), lines[j:]...), "\n")
	}
	return s
}

// The helpers above decide what the walk-through test compares: they are
// checked here without the launcher.

func TestMaskerMasks(t *testing.T) {
	m := newMasker()
	id := strings.Repeat("ab12", 16)
	m.learn("web-nasa", id)
	in := id + "\n172.17.0.2\tweb-nasa " + id[:12] + "\n" +
		`"Id": "` + strings.Repeat("9", 64) + `", "Created": "2026-12-04T18:23:29.751763818Z"` + "\n" +
		"3 seconds ago   Up Less than a second   About a minute ago   Up 2 hours\n" +
		"64 bytes from 192.168.57.3: seq=0 ttl=64 time=0.553 ms\nround-trip min/avg/max = 0.093/0.323/0.553 ms\n" +
		"    inet6 fe80::42:c0ff:fea8:3902/64 scope link tentative \n"
	want := "<id:web-nasa>\n172.17.0.2\tweb-nasa <short-id:web-nasa>\n" +
		`"Id": "<id>", "Created": "<time>"` + "\n" +
		"<created>   Up <uptime>   <created>   Up <uptime>\n" +
		"64 bytes from 192.168.57.3: seq=0 ttl=64 time=<ms> ms\nround-trip min/avg/max = <ms>/<ms>/<ms> ms\n" +
		"    inet6 fe80::42:c0ff:fea8:3902/64 scope link \n"
	if got := m.mask(in); got != want {
		t.Errorf("mask:\n%s", lineDiff(want, got))
	}
}

func TestMaskTable(t *testing.T) {
	m := newMasker()
	m.learn("pf-nasa-web", "2359884076ad"+strings.Repeat("0", 52))
	in := "" +
		"CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         PORTS                  NAMES\n" +
		"2359884076ad   bb        \"sh -c 'busybox mkdi…\"   3 seconds ago   Up 2 seconds   0.0.0.0:8080->80/tcp   pf-nasa-web\n" +
		"bc3206297f42   bb        \"sh\"                     4 seconds ago   Up 2 seconds                          link-alias\n"
	want := "" +
		"CONTAINER ID             IMAGE   COMMAND                  CREATED     STATUS        PORTS                  NAMES\n" +
		"<short-id:pf-nasa-web>   bb      \"sh -c 'busybox mkdi…\"   <created>   Up <uptime>   0.0.0.0:8080->80/tcp   pf-nasa-web\n" +
		"<id>                     bb      \"sh\"                     <created>   Up <uptime>                          link-alias\n"
	if got := maskTable(in, m.mask); got != want {
		t.Errorf("maskTable:\n%s", lineDiff(want, got))
	}
}

func TestSortEntries(t *testing.T) {
	in := `        "Containers": {
            "b": {
                "Name": "b",
                "IPv6Address": ""
            },
            "a": {
                "Name": "a"
            }
        },
        "Options": {}`
	want := `        "Containers": {
            "a": {
                "Name": "a"
            },
            "b": {
                "Name": "b",
                "IPv6Address": ""
            }
        },
        "Options": {}`
	if got := sortEntries(in, "Containers"); got != want {
		t.Errorf("sortEntries:\n%s", lineDiff(want, got))
	}
}

func TestLineDiff(t *testing.T) {
	want := "  \"a\"\n- \"b\"\n+ \"B\"\n  \"c\"\n+ \"d\"\n"
	if got := lineDiff("a\nb\nc", "a\nB\nc\nd"); got != want {
		t.Errorf("lineDiff:\n%s\nwant:\n%s", got, want)
	}
}
