#!/usr/bin/env bash
# bench/memory.sh: the memory of idle detached sandboxes on the default
# (bridge) network, per process role, as a user gets them with
# `netns-run run -d -- sleep infinity`.
#
#   sudo bench/memory.sh              members 1 and 5, bin/netns-run
#   sudo NETNS_RUN=/tmp/x/netns-run MEM_COUNTS="1 10" bench/memory.sh
#
# For each count N it starts N detached members (mem-1 .. mem-N) as the
# unprivileged user, waits MEM_SETTLE seconds for them to idle, prints Pss,
# Anonymous and Rss (KiB, from /proc/PID/smaps_rollup) summed per role
# (daemon, supervisor, agent) and in all, then removes the members by name
# (`netns-run rm -f`) and waits for the daemon to leave (it exits two
# seconds after its last member; past 10 s it is sent SIGTERM by its pid).
# Last, the cost of each member past the first: (total(N) - total(first)) /
# (N - first).
#
# Knobs (environment): NETNS_RUN (bin/netns-run) MEM_COUNTS ("1 5")
#   MEM_SETTLE (5 s) MEM_USER (netns-test) MEM_VERBOSE=1 (every process, with its threads)
#   MEM_ENV ("K=V ..." added to netns-run's environment, for experiments)
#
# Safety: it runs in a network and pid namespace of its own (unshare), which
# holds only loopback, with a throwaway XDG_RUNTIME_DIR and HOME: no packet
# leaves it, nothing it starts outlives it, and it touches no other
# sandbox or daemon of the user.
set -u -o pipefail

SELF=$(readlink -f "$0")
ROOT=$(dirname "$(dirname "$SELF")")
BIN=$(readlink -f "${NETNS_RUN:-$ROOT/bin/netns-run}")
AGENT_BIN=$(dirname "$BIN")/netns-run-agent # each sandbox's pid 1, when built beside it
COUNTS=${MEM_COUNTS:-1 5}
SETTLE=${MEM_SETTLE:-5}
USER_NAME=${MEM_USER:-netns-test}

die() { echo "memory.sh: $*" >&2; exit 1; }

if [ "${1:-}" != --inner ]; then
	[ "$(id -u)" = 0 ] || die "run as root (it runs netns-run as $USER_NAME in namespaces of its own)"
	[ -x "$BIN" ] || die "no binary at $BIN: make build, or set NETNS_RUN"
	id "$USER_NAME" >/dev/null 2>&1 || die "no user $USER_NAME: scripts/ensure-test-user.sh makes it"
	for n in $COUNTS; do
		case $n in '' | *[!0-9]* | 0) die "MEM_COUNTS holds counts of 1 or more, not \"$n\"" ;; esac
	done
	exec unshare --net --pid --fork --mount-proc "$SELF" --inner
fi

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
throwaway_dirs mem "$USER_NAME"

# as_user runs netns-run as the user with the throwaway directories.
as_user() {
	# shellcheck disable=SC2086 # MEM_ENV is a list of K=V words
	runuser -u "$USER_NAME" -- env -i PATH=/usr/local/bin:/usr/bin:/bin \
		HOME="$WORK/home" XDG_RUNTIME_DIR="$WORK/run" ${MEM_ENV:-} "$BIN" "$@"
}

# role PID: daemon, supervisor or agent, from the command line.
role() {
	local argv0 argv1
	{ IFS= read -r -d '' argv0; IFS= read -r -d '' argv1; } <"/proc/$1/cmdline"
	case "$argv0:${argv1:-}" in
	netns-run-sandbox:*) echo agent ;;
	*:daemon) echo daemon ;;
	*) echo supervisor ;;
	esac
}

# ours: the pids running our binary (in this pid namespace, all are ours).
ours() {
	local p
	for p in /proc/[0-9]*; do
		case "$(readlink "$p/exe" 2>/dev/null)" in "$BIN" | "$AGENT_BIN") echo "${p#/proc/}" ;; esac
	done
}

# measure N: one line per role and the total, "role count pss anon rss".
measure() {
	local p r
	for p in $(ours); do
		r=$(role "$p") || continue
		awk -v role="$r" -v pid="$p" -v verbose="${MEM_VERBOSE:-}" '
			$1 == "Pss:" { pss = $2 } $1 == "Anonymous:" { anon = $2 } $1 == "Rss:" { rss = $2 } $1 == "Threads:" { threads = $2 }
			END { print role, pss, anon, rss; if (verbose) printf "  pid %-7s %-10s Pss %6d Anon %6d Rss %6d KiB, %d threads\n", pid, role, pss, anon, rss, threads > "/dev/stderr" }
		' "/proc/$p/smaps_rollup" "/proc/$p/status"
	done | awk '
		{ n[$1]++; pss[$1] += $2; anon[$1] += $3; rss[$1] += $4
		  tn++; tp += $2; ta += $3; tr += $4 }
		END {
			split("daemon supervisor agent", order, " ")
			for (i = 1; i <= 3; i++) { r = order[i]; print r, n[r] + 0, pss[r] + 0, anon[r] + 0, rss[r] + 0 }
			print "total", tn + 0, tp + 0, ta + 0, tr + 0
		}'
}

wait_daemon_gone() {
	local d i
	for d in $(ours); do
		[ "$(role "$d")" = daemon ] || continue
		for i in $(seq 100); do
			[ -d "/proc/$d" ] || break
			sleep 0.1
		done
		if [ -d "/proc/$d" ]; then
			echo "memory.sh: the daemon (pid $d) stayed 10 s after its last member; SIGTERM" >&2
			kill -TERM "$d"
		fi
	done
}

declare -A TOTAL
printf '%-6s %-10s %5s %9s %9s %9s\n' members role procs Pss_KiB Anon_KiB Rss_KiB
for n in $COUNTS; do
	names=()
	for i in $(seq "$n"); do
		names+=("mem-$i")
		as_user run -d --name "mem-$i" -- sleep infinity >/dev/null || die "member mem-$i did not start"
	done
	sleep "$SETTLE"
	while read -r r c pss anon rss; do
		printf '%-6s %-10s %5s %9s %9s %9s\n' "$n" "$r" "$c" "$pss" "$anon" "$rss"
		[ "$r" = total ] && TOTAL[$n]="$pss $anon $rss"
	done < <(measure)
	as_user rm -f "${names[@]}" >/dev/null || echo "memory.sh: rm -f ${names[*]} failed" >&2
	wait_daemon_gone
done

read -r -a counts <<<"$COUNTS"
first=${counts[0]}
for n in "${counts[@]:1}"; do
	[ "$n" -gt "$first" ] || continue
	read -r p0 a0 r0 <<<"${TOTAL[$first]}"
	read -r p1 a1 r1 <<<"${TOTAL[$n]}"
	d=$((n - first))
	printf 'per member past the first (%s vs %s): Pss %d Anon %d Rss %d KiB\n' \
		"$n" "$first" $(((p1 - p0) / d)) $(((a1 - a0) / d)) $(((r1 - r0) / d))
done
