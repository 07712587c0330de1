package wire

import "strings"

// MergeEnv is base with each KEY=VALUE of set replacing base's KEY, or
// appended when base has none, in set's order: -e and --env-file on top
// of an environment, as Docker applies them.
func MergeEnv(base, set []string) []string {
	out := append([]string(nil), base...)
	index := make(map[string]int, len(out))
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			continue
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	return out
}
