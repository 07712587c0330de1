//go:build linux

package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/wire"
)

// TestStatsRows: a shared network's member takes the daemon's counters,
// a private sandbox its supervisor's (or "-" when it gave none), and a
// sandbox on none a row with no counters.
func TestStatsRows(t *testing.T) {
	recs := []registry.Record{
		{ID: "1", Name: "shared", Network: "net1"},
		{ID: "2", Name: "priv", Network: "private"},
		{ID: "3", Name: "quiet", Network: "private"},
		{ID: "4", Name: "off", Network: "none"},
	}
	nets := []wire.NetworkStats{{Network: "net1", Members: []wire.MemberStats{{SandboxID: "1", RxBytes: 10, RxPackets: 1}}}}
	private := map[string]*wire.MemberStats{"2": {RxBytes: 2048, RxPackets: 3, TxBytes: 1000, TxPackets: 2, TCP: 1}}
	rows := statsRows(recs, nets, private)
	var b bytes.Buffer
	if err := writeStats(&b, "", rows); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^off +none +- +- +- +- +-$`,
		`(?m)^priv +private +2.05kB / 3 pkts +1kB / 2 pkts +0 +1 +0$`,
		`(?m)^quiet +private +- +- +- +- +-$`,
		`(?m)^shared +net1 +10B / 1 pkts +0B / 0 pkts +0 +0 +0$`,
	} {
		if !regexp.MustCompile(re).Match(b.Bytes()) {
			t.Errorf("stats does not match %s:\n%s", re, b.String())
		}
	}
	if len(rows) != 4 {
		t.Errorf("%d rows; want one a sandbox:\n%s", len(rows), b.String())
	}
}
