//go:build linux

package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseDetachKeys(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []byte
	}{
		{"", []byte{16, 17}},
		{"ctrl-p,ctrl-q", []byte{16, 17}},
		{"ctrl-x,y", []byte{24, 'y'}},
		{"ctrl-@,ctrl-[,ctrl-_", []byte{0, 27, 31}},
		{"a,DEL", []byte{'a', 127}},
	} {
		got, err := parseDetachKeys(c.in)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("parseDetachKeys(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"ctrl-1", "ab", "ctrl-", "ctrl-p,", "shift-a"} {
		if _, err := parseDetachKeys(bad); err == nil || !strings.Contains(err.Error(), "--detach-keys") {
			t.Errorf("parseDetachKeys(%q): %v; want an error naming --detach-keys", bad, err)
		}
	}
}
