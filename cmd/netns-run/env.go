package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// envVars reads -e values and --env-file files as Docker does: KEY=VALUE
// is taken as it is, a bare KEY takes the caller's value (and is left out
// when the caller has none); in a file, blank lines and lines starting
// with # are skipped and nothing is unquoted. Files come first, then -e,
// so that -e wins.
func envVars(values, files []string) ([]string, error) {
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("invalid --env-file: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimLeft(sc.Text(), " \t")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			kv, err := envVar(line)
			if err != nil {
				return nil, fmt.Errorf("invalid --env-file %s, line %d: %w", f, n, err)
			}
			out = append(out, kv...)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("invalid --env-file %s: %w", f, err)
		}
	}
	for _, v := range values {
		kv, err := envVar(v)
		if err != nil {
			return nil, fmt.Errorf("invalid --env %q: %w", v, err)
		}
		out = append(out, kv...)
	}
	return out, nil
}

func envVar(s string) ([]string, error) {
	k, _, hasValue := strings.Cut(s, "=")
	switch {
	case k == "":
		return nil, fmt.Errorf("the variable has no name: want KEY=VALUE or KEY")
	case strings.ContainsAny(k, " \t"):
		return nil, fmt.Errorf("variable %q contains whitespace", k)
	case hasValue:
		return []string{s}, nil
	}
	if v, ok := os.LookupEnv(k); ok {
		return []string{k + "=" + v}, nil
	}
	return nil, nil
}
