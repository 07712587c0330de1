package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
)

// --format as Docker's CLI takes it: a Go template run on each row, with
// Docker's field names and template functions; a "table" prefix aligns
// the columns and heads them with the fields' names.

// templateFuncs are the functions Docker's templates offer that apply here.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
	"pad": func(s string, before, after int) string {
		return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
	},
}

// writeFormatted runs format on every row; header is a row whose fields
// hold the column titles, printed first for a "table" format.
func writeFormatted[T any](out io.Writer, format string, header T, rows []T) error {
	table := false
	if rest, ok := strings.CutPrefix(format, "table"); ok {
		table, format = true, strings.TrimLeft(rest, " ")
	}
	// Docker's templates write \t for a tab and \n for a newline.
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err := template.New("format").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return fmt.Errorf("invalid --format: %w", err)
	}
	w := out
	var tw *tabwriter.Writer
	if table {
		tw = tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
		w = tw
		if err := execLine(w, tmpl, header); err != nil {
			return err
		}
	}
	for _, r := range rows {
		if err := execLine(w, tmpl, r); err != nil {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func execLine(w io.Writer, tmpl *template.Template, v any) error {
	var b strings.Builder
	if err := tmpl.Execute(&b, v); err != nil {
		return fmt.Errorf("invalid --format: %w", err)
	}
	_, err := fmt.Fprintln(w, b.String())
	return err
}
