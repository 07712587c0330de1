#!/usr/bin/env bash
# bench/flood.sh: what a SYN flood from one member of a shared network
# costs another member's download, measured the way the containment
# targets are stated: the victim downloads from a world host (iperf3 -R,
# through the gateway's NAT) while an attacker member sends SYNs with
# hping3 through the same gateway.
#
#   sudo bench/flood.sh                  3 rounds of each case, bin/netns-run
#   sudo NETNS_RUN=/tmp/x/netns-run FLOOD_ROUNDS=5 FLOOD_CASES="open" bench/flood.sh
#
# Cases (FLOOD_CASES, default "open closed flood"): open, 20k SYN/s
# (hping3 -S -i u50) to a port a server of the world host listens on, so
# that the SYNs the member's limits let through become real host-side
# connections; closed, the same rate to a port nobody listens on; flood,
# hping3 --flood to the open port. Every flood's download is set against
# the mean of the quiet downloads just before and just after it (the
# machine's speed drifts), and each line gives that ratio, with the
# network daemon's CPU during the quiet download before and the flooded
# one: the share of the cores it got.
#
# Knobs (environment): NETNS_RUN (bin/netns-run) FLOOD_ROUNDS (3)
#   FLOOD_CASES FLOOD_T (3 s per download) FLOOD_USER (netns-test)
#
# Safety: it runs in a network and pid namespace of its own (unshare) that
# holds only loopback and a veth pair to a "world" namespace it makes
# (198.51.100.0/24), with a throwaway XDG_RUNTIME_DIR and HOME: no packet
# leaves them, nothing it starts outlives them, and it touches no other
# sandbox or daemon of the user.
set -u -o pipefail

SELF=$(readlink -f "$0")
ROOT=$(dirname "$(dirname "$SELF")")
BIN=$(readlink -f "${NETNS_RUN:-$ROOT/bin/netns-run}")
ROUNDS=${FLOOD_ROUNDS:-3}
CASES=${FLOOD_CASES:-open closed flood}
T=${FLOOD_T:-3}
USER_NAME=${FLOOD_USER:-netns-test}
HOST_W=198.51.100.1 WORLD=198.51.100.2 OPEN=7777 CLOSED=7778

die() { echo "flood.sh: $*" >&2; exit 1; }

if [ "${1:-}" != --inner ]; then
	[ "$(id -u)" = 0 ] || die "run as root (it runs netns-run as $USER_NAME in namespaces of its own)"
	[ -x "$BIN" ] || die "no binary at $BIN: make build, or set NETNS_RUN"
	id "$USER_NAME" >/dev/null 2>&1 || die "no user $USER_NAME: scripts/ensure-test-user.sh makes it"
	for b in iperf3 hping3 jq unshare nsenter runuser; do
		command -v "$b" >/dev/null || die "$b is missing: apt-get install iperf3 hping3 jq util-linux"
	done
	case $ROUNDS in '' | *[!0-9]* | 0) die "FLOOD_ROUNDS is a count of 1 or more, not \"$ROUNDS\"" ;; esac
	for c in $CASES; do
		case $c in open | closed | flood) ;; *) die "FLOOD_CASES takes open, closed and flood, not \"$c\"" ;; esac
	done
	exec unshare --net --pid --fork --mount-proc "$SELF" --inner
fi

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
throwaway_dirs flood "$USER_NAME"

as_user() {
	runuser -u "$USER_NAME" -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME="$WORK/home" XDG_RUNTIME_DIR="$WORK/run" "$BIN" "$@"
}

# The world: a namespace of its own behind a veth, with the iperf3 server
# the victim downloads from and a second one on the open port, which
# accepts every connection the attacker's SYNs become.
unshare --net sleep infinity &
WORLD_PID=$!
sleep 0.2
ip link add world0 type veth peer name eth0 netns "$WORLD_PID" || die "veth to the world"
{ ip addr add $HOST_W/24 dev world0 && ip link set world0 up; } || die "world0"
nsenter -n -t "$WORLD_PID" sh -c "ip link set lo up && ip addr add $WORLD/24 dev eth0 && ip link set eth0 up" || die "the world's eth0"
nsenter -n -t "$WORLD_PID" iperf3 -s -D >/dev/null 2>&1 || die "iperf3 server"
nsenter -n -t "$WORLD_PID" iperf3 -s -p $OPEN -D >/dev/null 2>&1 || die "the open port's server"
sleep 0.3

as_user network create --subnet 10.88.0.0/24 floodnet >/dev/null || die "network create"
as_user run -d --name victim --network floodnet -- sleep infinity >/dev/null || die "the victim did not start"

# The network daemon, the one process of ours whose argv[1] is "daemon"
# (in this pid namespace every process is ours).
DAEMON=
for p in /proc/[0-9]*; do
	{ IFS= read -r -d '' _ && IFS= read -r -d '' a1; } <"$p/cmdline" 2>/dev/null || continue
	[ "$a1" = daemon ] && [ "$(readlink "$p/exe")" = "$BIN" ] && DAEMON=${p#/proc/}
done
[ -n "$DAEMON" ] || die "no network daemon runs"

# cpu_ticks: the daemon's user and system time so far, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$DAEMON/stat" | awk '{print $12 + $13}'; }
HZ=$(getconf CLK_TCK)

# download: the victim's Gbit/s from the world host (or "fail"), and the
# daemon's CPU meanwhile in % of a core.
download() {
	local c0 t0 g
	c0=$(cpu_ticks) t0=$(date +%s%N)
	g=$(as_user exec victim -- timeout $((T + 10)) iperf3 -c $WORLD -R -t "$T" -J 2>/dev/null |
		jq -e '.end.sum_received.bits_per_second / 1e9' 2>/dev/null) || g=fail
	echo "$g $(awk -v c="$(($(cpu_ticks) - c0))" -v ns="$(($(date +%s%N) - t0))" -v hz="$HZ" 'BEGIN { printf "%d", c / hz / (ns / 1e9) * 100 }')"
}

echo "Gbit/s of the victim's downloads; the daemon's CPU during the quiet one before and the flooded one, % of a core"
printf '%-6s %-7s %8s %8s %8s %6s %9s %9s\n' round case quiet flood after ratio cpu_quiet cpu_flood
for r in $(seq "$ROUNDS"); do
	for c in $CASES; do
		case $c in
		open) args=(-i u50 -p "$OPEN") ;;
		closed) args=(-i u50 -p "$CLOSED") ;;
		flood) args=(--flood -p "$OPEN") ;;
		esac
		read -r q qcpu < <(download)
		as_user run -d --name attacker --network floodnet -- hping3 -q -S "${args[@]}" $WORLD >/dev/null || die "the attacker did not start"
		sleep 0.5 # the flood in full swing
		read -r f fcpu < <(download)
		as_user rm -f attacker >/dev/null || echo "flood.sh: rm -f attacker failed" >&2
		read -r a _ < <(download)
		awk -v r="$r" -v c="$c" -v q="$q" -v f="$f" -v a="$a" -v qc="$qcpu" -v fc="$fcpu" 'BEGIN {
			ratio = (q + 0 > 0 && a + 0 > 0 && f + 0 > 0) ? sprintf("%.2f", 2 * f / (q + a)) : "-"
			printf "%-6s %-7s %8s %8s %8s %6s %9s %9s\n", r, c, substr(q, 1, 5), substr(f, 1, 5), substr(a, 1, 5), ratio, qc, fc }'
	done
done
as_user rm -f victim >/dev/null
as_user network rm floodnet >/dev/null
