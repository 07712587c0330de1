# table.awk: turn bench/run.sh's raw samples (TAB-separated: tool, metric,
# value, round) into markdown.
#
#   awk -F'\t' -f table.awk -v mode=median|range|targets -v tools="veth ..." -v rows="$ROWS" raw.tsv...
#
# A value is a number, "fail", or "n/a:REASON". mode=median: medians, plus
# for each netns-run column its ratio to pasta and to veth, and for each
# client column through netns-run (X_netns_run) its ratio to the same
# client through slirp4netns (X_slirp4netns). mode=range:
# min-max over rounds. mode=targets: issue 4's targets for the netns-run
# column (informative only: the bench never fails on them).

function sortnum(list, a,   n, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n
}
function median(list,   a, n) {
	n = sortnum(list, a)
	if (n % 2) return a[(n + 1) / 2]
	return (a[n / 2] + a[n / 2 + 1]) / 2
}
function label(t) {
	if (t == "veth") return "veth (kernel)"
	if (t == "slirp4netns") return "slirp4netns 65520"
	if (t == "pasta_tap") return "pasta tap"
	if (t == "netns_run") return "netns-run"
	if (t == "netns_run_packet") return "netns-run packet"
	if (t == "netns_run_default") return "netns-run default (bridge)"
	if (t == "rk_slirp4netns") return "RootlessKit + slirp4netns"
	if (t == "rk_netns_run") return "RootlessKit + netns-run"
	if (t == "podman_slirp4netns") return "Podman + slirp4netns"
	if (t == "podman_netns_run") return "Podman + netns-run"
	return t
}
function client(t) { return t ~ /^(rk|podman)_netns_run$/ }
# pair(t): a client column's reference, the same client through slirp4netns
function pair(t,   r) { r = t; sub(/_netns_run$/, "_slirp4netns", r); return r }
# med(tool, metric): the median, or "" when there is no number
function med(t, m,   k) { k = t SUBSEP m; return (k in num) ? median(num[k]) : "" }

{
	k = $1 SUBSEP $2
	if ($3 ~ /^[0-9.]+$/) num[k] = num[k] " " $3
	else if ($3 ~ /^n\/a/) { na[k] = $3; sub(/^n\/a:?/, "", na[k]) }
	else nfail[k]++
	seen[$1] = 1
}

END {
	if (mode == "targets") { targets(); exit }
	nt = 0; split(tools, tl, " ")
	for (i = 1; i in tl; i++) if (tl[i] in seen) { cols[++nt] = tl[i]; incol[tl[i]] = 1 }
	hdr = "| metric |"; sep = "|---|"
	for (c = 1; c <= nt; c++) { hdr = hdr " " label(cols[c]) " |"; sep = sep "---:|" }
	if (mode == "median") for (c = 1; c <= nt; c++) if (cols[c] ~ /^netns_run/) {
		if ("pasta" in seen) { hdr = hdr " " label(cols[c]) " / pasta |"; sep = sep "---:|" }
		if ("veth" in seen) { hdr = hdr " " label(cols[c]) " / veth |"; sep = sep "---:|" }
	} else if (client(cols[c]) && (pair(cols[c]) in incol)) {
		hdr = hdr " " (cols[c] ~ /^rk_/ ? "RootlessKit" : "Podman") ": netns-run / slirp4netns |"; sep = sep "---:|"
	}
	print hdr; print sep
	nr = split(rows, rl, "\n")
	for (r = 1; r <= nr; r++) {
		split(rl[r], f, "|"); m = f[1]; any = 0
		for (c = 1; c <= nt; c++) { k = cols[c] SUBSEP m; if (k in num || k in na || k in nfail) any = 1 }
		if (!any) continue
		line = "| " f[2] " |"
		for (c = 1; c <= nt; c++) {
			k = cols[c] SUBSEP m; val[c] = ""
			if (k in num) {
				if (mode == "range") {
					n = sortnum(num[k], a)
					cell = sprintf("%." f[4] "f–%." f[4] "f", a[1] * f[3], a[n] * f[3])
				} else {
					val[c] = median(num[k]) * f[3]
					cell = sprintf("%." f[4] "f", val[c])
				}
				if (nfail[k]) cell = cell " (" nfail[k] " fail)"
			} else if (k in na) cell = "n/a" (na[k] != "" ? " (" na[k] ")" : "")
			else if (k in nfail) cell = "fail"
			else cell = "–"
			line = line " " cell " |"
		}
		if (mode == "median") for (c = 1; c <= nt; c++) if (cols[c] ~ /^netns_run/) {
			for (q = 1; q <= 2; q++) {
				ref = (q == 1) ? "pasta" : "veth"
				if (!(ref in seen)) continue
				rc = 0; for (d = 1; d <= nt; d++) if (cols[d] == ref) rc = d
				if (val[c] != "" && rc && val[rc] != "" && val[rc] > 0) line = line sprintf(" %.2fx |", val[c] / val[rc])
				else line = line " – |"
			}
		} else if (client(cols[c]) && (pair(cols[c]) in incol)) {
			rc = 0; for (d = 1; d <= nt; d++) if (cols[d] == pair(cols[c])) rc = d
			if (val[c] != "" && rc && val[rc] != "" && val[rc] > 0) line = line sprintf(" %.2fx |", val[c] / val[rc])
			else line = line " – |"
		}
		print line
	}
}

function fmt(x) { return sprintf(x >= 100 ? "%.0f" : x >= 10 ? "%.1f" : "%.2f", x) }
# target(what, metric, reference tool, factor, ">=" or "<=", scale): one row
# comparing netns-run's median with factor x the reference's (reference "" =
# the factor is absolute); scale converts raw units (KiB -> MiB).
function target(what, m, ref, factor, op, scale,   v, r, goal, met) {
	if (scale == "") scale = 1
	v = med("netns_run", m)
	k = "netns_run" SUBSEP m
	if (v == "") {
		printf "| %s | %s | | not measured |\n", what, (k in na) ? "n/a (" na[k] ")" : "fail"
		return
	}
	if (ref == "") goal = factor
	else {
		r = med(ref, m)
		if (r == "") { printf "| %s | %s | | no %s number |\n", what, fmt(v * scale), label(ref); return }
		goal = factor * r * scale
	}
	v = v * scale
	met = (op == ">=") ? (v >= goal) : (v <= goal)
	printf "| %s | %s | %s %s | %s |\n", what, fmt(v), op, fmt(goal), met ? "met" : "not met"
}
function targets() {
	print "| target (issue 4) | netns-run | goal | |"
	print "|---|---:|---:|---|"
	target("host loopback -> published port >= pasta splice, Gbit/s", "in_lo", "pasta", 1, ">=")
	target("same, -R, Gbit/s", "in_lo_R", "pasta", 1, ">=")
	target("world -> published port >= 2x slirp4netns, Gbit/s", "in_world", "slirp4netns", 2, ">=")
	target("same, -R, Gbit/s", "in_world_R", "slirp4netns", 2, ">=")
	target("sandbox -> host >= pasta splice, Gbit/s", "out", "pasta", 1, ">=")
	target("same, -R, Gbit/s", "out_R", "pasta", 1, ">=")
	target("member <-> member >= 0.5x veth, Gbit/s", "mm", "veth", 0.5, ">=")
	target("new connections/s >= 1.5x pasta splice", "rps_close", "pasta", 1.5, ">=")
	target("round trip p50 <= 0.8x pasta, us", "rtt_p50", "pasta", 0.8, "<=")
	target("RSS of the network process after load <= 25 MiB, MiB", "rss_after", "", 25, "<=", 1 / 1024)
	target("RSS per extra member <= 1 MiB, MiB", "seg_per_member", "", 1, "<=", 1 / 1024)
	target("start-up <= 0.8x slirp4netns, ms", "startup_ms", "slirp4netns", 0.8, "<=")
}
