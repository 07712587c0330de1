#!/usr/bin/env bash
# bench/run.sh: netns-run side by side with a kernel veth pair, slirp4netns
# and pasta, on this machine, in one run (`make bench`; see bench/README.md);
# with BENCH_CLIENTS=1 also RootlessKit and rootless Podman, each through the
# reference slirp4netns and through netns-run as their slirp4netns.
#
#   sudo bench/run.sh                 install what is missing, measure, print the
#                                     table and write BENCHMARKS.md at the repo root
#   bench/run.sh --table RAW.tsv...   print the table again from raw results
#
# Knobs (environment): BENCH_ROUNDS (3) BENCH_TOOLS BENCH_USER (netns-test)
#   IPERF_T (3 s) WRK_D (3 s) WRK_ARGS (-t2 -c32) LAT_T (3 s) UDP_T (3 s)
#   STARTUP_RUNS (3 per round) BENCH_OUT (/tmp/netns-run-bench) BENCH_MD
#   BENCH_TIMEOUT (2400 s for the whole measuring stage) BENCH_NO_INSTALL=1
#   NETNS_RUN (bin/netns-run) GO (go)
#   BENCH_CLIENTS=1 adds the client columns (CLIENT_TOOLS) to the default
#   columns; BENCH_TOOLS may name them too
#
# Safety. Everything is measured inside a throwaway network namespace (made
# with unshare --net, together with a pid namespace so that nothing we start
# can outlive the run) that holds only loopback and veth pairs this script
# creates: to a "world" namespace (198.51.100.0/24 and 2001:db8::/64, the
# remote client) and to the veth anchor's namespace (198.18.1.0/24 and
# 2001:db8:1::/64). The script refuses to run if
# that namespace shows any other interface. No packet can reach the machine's
# real interfaces. Every client command runs under `timeout`; only pids this
# script started are signalled, by pid. The client columns' RootlessKit and
# Podman make their own namespaces inside that one, as the user; what they
# start (slirp4netns, rootlessport, conmon, containers) is stopped through
# them (rootlesskit's own pid, `podman rm -f`), and dies with the pid
# namespace in any case.
set -u -o pipefail

SELF=$(readlink -f "$0")
HERE=$(dirname "$SELF")
ROOT=$(dirname "$HERE")

ROUNDS=${BENCH_ROUNDS:-3}
BASE_TOOLS="veth slirp4netns pasta pasta_tap netns_run netns_run_default netns_run_packet"
# The clients of the slirp4netns command line, each on the reference binary
# and on netns-run as slirp4netns: opt-in (BENCH_CLIENTS=1): they add about 70 %
# to the default run (about 35 s per column and round on 2 cores, 7 min for 3 rounds).
CLIENT_TOOLS="rk_slirp4netns rk_netns_run podman_slirp4netns podman_netns_run"
ALL_TOOLS="$BASE_TOOLS $CLIENT_TOOLS"
DEFAULT_TOOLS="veth slirp4netns pasta netns_run netns_run_default netns_run_packet"
[ "${BENCH_CLIENTS:-0}" = 1 ] && DEFAULT_TOOLS="$DEFAULT_TOOLS $CLIENT_TOOLS"
TOOLS=${BENCH_TOOLS:-$DEFAULT_TOOLS}
BUSER=${BENCH_USER:-netns-test}
IPERF_T=${IPERF_T:-3}
WRK_D=${WRK_D:-3}
WRK_ARGS=${WRK_ARGS:--t2 -c32}
LAT_T=${LAT_T:-3}
UDP_T=${UDP_T:-3}
STARTUP_RUNS=${STARTUP_RUNS:-3}
OUT=${BENCH_OUT:-/tmp/netns-run-bench}
MD=${BENCH_MD:-$ROOT/BENCHMARKS.md}
LOCK=${BENCH_LOCK:-/tmp/bench.lock}  # machine-wide: other benchmarks on this machine may take it too
# The client columns add about as much again as the default ones take.
case " $TOOLS " in *" rk_"* | *" podman_"*) BENCH_TIMEOUT=${BENCH_TIMEOUT:-4800} ;; *) BENCH_TIMEOUT=${BENCH_TIMEOUT:-2400} ;; esac
GO=${GO:-go}

# Ports. Servers inside a sandbox listen on NS_*; each tool publishes them on
# the host as NS_*+PUB_OFF. Host-side servers listen on HOST_*.
NS_IPERF=5201; NS_HTTP=8080; NS_RTT=7001
# UDP keeps one port number on both sides: pasta 2023 drops the replies of a
# loopback (spliced) UDP flow whose port it translates, e.g. -u 17001:7001.
NS_UDP=17002; PUB_UDP=17002
HOST_IPERF=5301; HOST_PROBE=5399
# Addresses inside the throwaway namespaces.
HOST_W=198.51.100.1; WORLD=198.51.100.2            # host <-> world veth
HOST_W6=2001:db8::1; WORLD6=2001:db8::2            # the same veth, IPv6
VETH_HOST=198.18.1.1; VETH_NS=198.18.1.2           # veth anchor
VETH_HOST6=2001:db8:1::1; VETH_NS6=2001:db8:1::2   # veth anchor, IPv6
MM_A=198.18.2.1; MM_B=198.18.2.2                   # veth member <-> member anchor

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

# Display names and the table's rows: metric key | label | unit scale | decimals.
label() {
	case $1 in
	veth) echo "veth (kernel)" ;; slirp4netns) echo "slirp4netns 65520" ;;
	pasta) echo "pasta" ;; pasta_tap) echo "pasta tap" ;;
	netns_run) echo "netns-run" ;; netns_run_packet) echo "netns-run packet" ;;
	netns_run_default) echo "netns-run default (bridge)" ;;
	rk_slirp4netns) echo "RootlessKit + slirp4netns" ;; rk_netns_run) echo "RootlessKit + netns-run" ;;
	podman_slirp4netns) echo "Podman + slirp4netns" ;; podman_netns_run) echo "Podman + netns-run" ;;
	*) echo "$1" ;;
	esac
}
ROWS="out|sandbox -> host TCP Gbit/s|1|2
out_R|host -> sandbox TCP Gbit/s (sandbox dials, iperf3 -R)|1|2
out_gw|sandbox -> host through the gateway (gVisor) TCP Gbit/s|1|2
out_gw_R|host -> sandbox through the gateway (gVisor), -R, TCP Gbit/s|1|2
in_lo|host loopback -> published port TCP Gbit/s|1|2
in_lo_R|published port -> host loopback TCP Gbit/s (-R)|1|2
in_world|world -> published port TCP Gbit/s|1|2
in_world_R|published port -> world TCP Gbit/s (-R)|1|2
in_world6|world -> published port over IPv6 ($WORLD6 -> [$HOST_W6]) TCP Gbit/s|1|2
mm|member -> member TCP Gbit/s (one segment)|1|2
mm_R|member <- member TCP Gbit/s (-R)|1|2
mm_cap|member -> member TCP Gbit/s while network capture -w /dev/null runs|1|2
rps_close|HTTP req/s, new connection per request|1|0
rps_ka|HTTP req/s, keep-alive|1|0
rtt_p50|TCP round trip p50 us (lower is better)|1|1
rtt_p99|TCP round trip p99 us (lower is better)|1|1
udp_pps|UDP 64-byte packets/s received through a published port|1|0
rss_idle|RSS of the network process(es), idle, MiB|0.0009765625|1
rss_after|RSS of the network process(es), after load, MiB|0.0009765625|1
rss_peak|peak RSS (VmHWM) of the network process(es), MiB|0.0009765625|1
seg_rss1|RSS of the network daemon with 1 idle member, MiB|0.0009765625|1
seg_rss10|RSS of the network daemon with 10 idle members, MiB|0.0009765625|1
seg_rss100|RSS of the network daemon with 100 idle members, MiB|0.0009765625|1
seg_per_member|RSS per extra idle member (100 vs 1), MiB|0.0009765625|2
member_startup_ms|start-up ms of a member: netns-run run --network bridge -- true|1|1
agent_rss|netns-run sandbox agent RSS (inside the sandbox, not a network process), MiB|0.0009765625|1
startup_ms|start-up ms: launch -> first TCP connect to a host listener|1|1
cpu_out|CPU % (1 core = 100) of the network process(es) during sandbox -> host|1|0
cpu_out_gw|CPU % of the network process(es) during sandbox -> host through the gateway|1|0
cpu_in_lo|CPU % of the network process(es) during loopback -> published port|1|0
cpu_in_world|CPU % of the network process(es) during world -> published port|1|0
cpu_close|CPU % of the network process(es) during wrk new-connection run|1|0
wrk_errs|wrk socket errors + non-2xx per run (close / keep-alive summed)|1|0"

# table MODE COLUMNS RAW.tsv...: markdown from raw samples (bench/table.awk):
# median (with netns-run's ratios to pasta and veth, and each client's
# through-netns-run column's ratio to its through-slirp4netns column),
# range or targets. The base columns and the client columns get a table
# each (the clients' is "Clients: through netns-run vs through slirp4netns").
table() {
	local mode=$1 cols=$2; shift 2
	awk -F'\t' -f "$HERE/table.awk" -v mode="$mode" -v tools="$cols" -v rows="$ROWS" "$@"
}
# among LIST WORD...: the words of LIST that are WORDs, in LIST's order
among() { local w out="" l=" ${*:2} "; for w in $1; do [[ "$l" == *" $w "* ]] && out="$out $w"; done; echo "${out# }"; }

if [ "${1:-}" = --table ]; then
	shift
	[ $# -gt 0 ] || die "--table needs raw.tsv files"
	TOOLS=$(awk -F'\t' -v all="$ALL_TOOLS" 'BEGIN{n=split(all,a," ")} {s[$1]=1} END{for(i=1;i<=n;i++) if(a[i] in s) printf "%s ", a[i]}' "$@")
	[ -n "$(among "$TOOLS" $BASE_TOOLS)" ] && table median "$(among "$TOOLS" $BASE_TOOLS)" "$@"
	if [ -n "$(among "$TOOLS" $CLIENT_TOOLS)" ]; then
		echo; echo "Clients: through netns-run vs through slirp4netns"; echo
		table median "$(among "$TOOLS" $CLIENT_TOOLS)" "$@"
	fi
	exit 0
fi

# ================================================================ stage 0
# As root in the machine's namespaces: install, build, then run stage 1 in
# the throwaway namespaces, and finally write the table and BENCHMARKS.md.
stage0() {
	[ "$(id -u)" = 0 ] || die "run as root (sudo make bench): it installs packages and makes namespaces; the measured tools run as $BUSER"
	for t in $TOOLS; do [[ " $ALL_TOOLS " == *" $t "* ]] || die "unknown tool $t (known: $ALL_TOOLS)"; done
	install_deps
	for b in unshare nsenter setpriv flock ip ss ps timeout iperf3 wrk jq curl; do
		command -v "$b" >/dev/null || die "missing $b, and installing it failed (see above)"
	done
	# The user the tools run as, with subordinate ids, as on a distro.
	"$ROOT/scripts/ensure-test-user.sh" "$BUSER" || die "cannot create user $BUSER"
	# Distros ship /dev/net/tun 0666; the TAP link of netns-run and pasta need it.
	if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
		log "chmod 0666 /dev/net/tun (as distros ship it)"; chmod 0666 /dev/net/tun
	fi

	mkdir -p "$OUT" || die "cannot make $OUT"
	rm -rf "$OUT/logs"; mkdir -p "$OUT/logs"; : > "$OUT/raw.tsv"; : > "$OUT/setups.txt"; : > "$OUT/failures.log"
	# Binaries go to a fresh world-readable directory: the checkout may sit
	# under a 0700 directory (e.g. /root) that the test user cannot enter.
	STAGE=$(mktemp -d /tmp/netns-run-bench-bin.XXXXXX) || die "mktemp"
	chmod 0755 "$STAGE"
	trap 'rm -rf "$STAGE"' EXIT
	local nr=${NETNS_RUN:-$ROOT/bin/netns-run}
	# netns-run-agent, each sandbox's pid 1, goes beside it as make build
	# puts it (without it netns-run would be its own agent).
	if [ -z "${NETNS_RUN:-}" ]; then
		(cd "$ROOT" && "$GO" build -o "$STAGE/netns-run" ./cmd/netns-run) || die "build netns-run"
		(cd "$ROOT" && "$GO" build -o "$STAGE/netns-run-agent" ./cmd/netns-run-agent) || die "build netns-run-agent"
	else
		install -m 0755 "$nr" "$STAGE/netns-run" || die "no netns-run at $nr"
		if [ -x "$(dirname "$nr")/netns-run-agent" ]; then
			install -m 0755 "$(dirname "$nr")/netns-run-agent" "$STAGE/netns-run-agent" || die "copy netns-run-agent"
		fi
	fi
	for h in rtt httpd slirpctl; do
		(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$STAGE/$h" "./bench/$h") || die "build bench/$h"
	done
	# netns-run as slirp4netns, as `make install` links it: the clients
	# exec this path, and netns-run takes the command line by that name.
	ln -s netns-run "$STAGE/slirp4netns" || die "link slirp4netns"
	if [ -n "$(among "$TOOLS" podman_slirp4netns podman_netns_run)" ]; then
		podman_image "$STAGE" || log "could not build the Podman columns' image; they will fail"
	fi
	versions > "$OUT/versions.txt"

	log "measuring: tools '$TOOLS', $ROUNDS rounds; logs in $OUT (at most ${BENCH_TIMEOUT}s)"
	local t0=$SECONDS
	# --pid --mount-proc: stage 1 is pid 1 of its own pid namespace, so
	# every process it starts dies with it, even after a timeout.
	timeout -k 20 "$BENCH_TIMEOUT" unshare --net --pid --mount-proc --fork --kill-child=SIGTERM -- \
		env BENCH_STAGE=1 STAGE="$STAGE" OUT="$OUT" BENCH_TOOLS="$TOOLS" bash "$SELF" < /dev/null
	local rc=$?
	[ $rc = 0 ] || log "measuring stage ended with status $rc (partial results are kept)"
	ELAPSED=$((SECONDS - t0))

	echo
	local base clients
	base=$(among "$TOOLS" $BASE_TOOLS); clients=$(among "$TOOLS" $CLIENT_TOOLS)
	rm -f "$OUT/table.md" "$OUT/table-range.md" "$OUT/targets.md" "$OUT/clients.md" "$OUT/clients-range.md"
	if [ -n "$base" ]; then
		table median "$base" "$OUT/raw.tsv" | tee "$OUT/table.md"
		table range "$base" "$OUT/raw.tsv" > "$OUT/table-range.md"
		table targets "$base" "$OUT/raw.tsv" > "$OUT/targets.md"
	fi
	if [ -n "$clients" ]; then
		echo; echo "Clients: through netns-run vs through slirp4netns"; echo
		table median "$clients" "$OUT/raw.tsv" | tee "$OUT/clients.md"
		table range "$clients" "$OUT/raw.tsv" > "$OUT/clients-range.md"
	fi
	echo "(medians of $ROUNDS rounds; raw samples $OUT/raw.tsv; logs $OUT/logs; failures $OUT/failures.log)"
	write_md > "$MD" && log "wrote $MD"
}

install_deps() {
	[ -n "${BENCH_NO_INSTALL:-}" ] && return 0
	# binary:Debian package. sockperf is not needed: bench/rtt measures round
	# trips and UDP packet rate itself.
	local want="iperf3:iperf3 wrk:wrk slirp4netns:slirp4netns pasta:passt newuidmap:uidmap jq:jq curl:curl
		unshare:util-linux nsenter:util-linux setpriv:util-linux flock:util-linux ip:iproute2 ss:iproute2 ps:procps"
	# The clients only when their columns run: podman pulls in a lot.
	# Podman is told to use runc (the runtime the e2e tests use), so that
	# one is wanted, not crun.
	[ -n "$(among "$TOOLS" rk_slirp4netns rk_netns_run)" ] && want="$want rootlesskit:rootlesskit rootlessctl:rootlesskit"
	[ -n "$(among "$TOOLS" podman_slirp4netns podman_netns_run)" ] && want="$want podman:podman runc:runc conmon:conmon ldd:libc-bin"
	local miss="" bp
	for bp in $want; do command -v "${bp%%:*}" >/dev/null || miss="$miss ${bp#*:}"; done
	[ -n "$miss" ] || return 0
	miss=$(echo $miss | tr ' ' '\n' | sort -u | tr '\n' ' ')
	log "installing from Debian:$miss"
	timeout 300 apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the install anyway"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends $miss > "$OUT.apt.log" 2>&1 \
		|| log "apt-get install failed (see $OUT.apt.log); anchors that are missing are skipped"
}

versions() {
	echo "date: $(date -u +%FT%TZ)"
	echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem/{print $2}') GiB RAM"
	echo "kernel: $(uname -r); TCP congestion control: $(cat /proc/sys/net/ipv4/tcp_congestion_control); OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
	local head dirty
	head=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)
	dirty=$(cd "$ROOT" && [ -n "$(git status --porcelain --untracked-files=no -- . ':!bench' ':!BENCHMARKS.md' ':!Makefile' 2>/dev/null)" ] && echo ", with uncommitted changes")
	if [ -n "${NETNS_RUN:-}" ]; then
		echo "netns-run: the binary $NETNS_RUN (sha256 $(sha256sum < "$STAGE/netns-run" | cut -c1-12)); checkout at $head$dirty; $("$GO" version)"
	else
		echo "netns-run: built from the checkout at $head$dirty; $("$GO" version)"
	fi
	echo "slirp4netns: $(slirp4netns --version 2>/dev/null | head -1) (Debian $(dpkg-query -W -f '${Version}' slirp4netns 2>/dev/null || echo 'not installed'))"
	echo "pasta: Debian passt $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo 'not installed')"
	echo "iperf3: $(iperf3 --version | head -1 | awk '{print $2}'); wrk: $(dpkg-query -W -f '${Version}' wrk 2>/dev/null); jq: $(jq --version)"
	if [ -n "$(among "$TOOLS" $CLIENT_TOOLS)" ]; then
		local p v=""
		for p in rootlesskit podman runc conmon; do v="$v${v:+; }$p $(dpkg-query -W -f '${Version}' $p 2>/dev/null || echo 'not installed')"; done
		echo "clients (Debian): $v"
	fi
	echo "params: BENCH_ROUNDS=$ROUNDS IPERF_T=$IPERF_T WRK_D=$WRK_D WRK_ARGS='$WRK_ARGS' LAT_T=$LAT_T UDP_T=$UDP_T STARTUP_RUNS=$STARTUP_RUNS user=$BUSER"
}

# md_results: the results tables of BENCHMARKS.md: the base columns', then
# the clients' (BENCH_CLIENTS=1), each with the reading it needs.
md_results() {
	if [ -s "$OUT/table.md" ]; then cat "$OUT/table.md"; else echo "(no base column in this run: BENCH_TOOLS='$TOOLS')"; fi
	[ -s "$OUT/clients.md" ] || return 0
	cat <<EOF

### Clients: through netns-run vs through slirp4netns

RootlessKit as dockerd-rootless.sh runs it (builtin port driver, rootless Docker's
default) and rootless Podman (\`--network slirp4netns\`, ports by rootlessport, Podman's
default), each once with Debian's slirp4netns and once with netns-run as its slirp4netns
(the \`slirp4netns\` link to netns-run); a ratio is the client through netns-run divided
by the same client through slirp4netns (start-up and round trips: below 1 wins). Both
clients close the host's loopback to the sandbox (\`--disable-host-loopback\`), so
"sandbox -> host" dials the host's address $HOST_W through the slirp's NAT (the path of
a container's outbound traffic). Published ports are served by the client's own
forwarder (RootlessKit's port driver, rootlessport), the same program in both columns,
which reaches the server through a socket made inside the namespace, not through the
slirp: those rows should read about 1x. RSS and CPU rows are the slirp4netns process
alone. Podman's start-up is \`podman run --rm\` to the probe's first connect, most of
it Podman's own (runc, conmon, storage).

$(cat "$OUT/clients.md")
EOF
}

write_md() {
	cat <<EOF
# Benchmarks

Written by bench/run.sh (\`make bench\`) on $(date -u '+%F %H:%M UTC'); the whole run took ${ELAPSED}s.
Medians of $ROUNDS rounds; every round measures every tool once, so slow drifts in
the machine's load hit all columns alike. Ratios are netns-run's median divided by
pasta's and by veth's (for round trips, lower is better, so a ratio below 1 wins).
This is a measurement, not a test: nothing here passes or fails.

## Machine and versions

\`\`\`
$(cat "$OUT/versions.txt")
\`\`\`

## Results

$(md_results)

A cell reads "fail" when every round of it failed and "(N fail)" when some did; the
reasons are in the run's failures.log:

\`\`\`
$(if [ -s "$OUT/failures.log" ]; then head -n 40 "$OUT/failures.log"; else echo "(no failures)"; fi)
\`\`\`

"–" means the row does not apply (the kernel
has no network process; no published port for veth, whose clients connect to the
namespace's address directly).

$(if [ -s "$OUT/targets.md" ]; then
	printf '### Targets of issue 4 (netns-run column; informative, never a gate)\n\n'
	cat "$OUT/targets.md"; echo
	if [ -s "$HERE/TARGETS.md" ]; then cat "$HERE/TARGETS.md"; echo; fi
fi)
### Spread: min–max over the rounds

$(cat "$OUT/table-range.md" 2>/dev/null)
$(if [ -s "$OUT/clients-range.md" ]; then printf '\nClients:\n\n'; cat "$OUT/clients-range.md"; fi)

### Known caveats of this setup

* pasta is Debian 12's build (upstream 2023-03-09). Its tap path (here: the world client,
  and the \`pasta tap\` column when BENCH_TOOLS has it) stalls in the ns -> outside direction;
  its loopback paths are spliced socket to socket and never cross a TCP/IP stack of its own.
* pasta always splices its loopback clients (and -T). Whether netns-run's loopback
  clients cross its gVisor stack depends on the build measured (see its version line).
* RSS and CPU rows count the network process in the host namespace only: netns-run's
  supervisor, slirp4netns, pasta. netns-run's in-sandbox agent (which may also open the
  sandbox-side sockets of a loopback fast path) is shown on its own RSS row. The
  exception is the \`netns-run default (bridge)\` column: there they are the sum of all of
  the sandbox's netns-run processes, the network daemon, the supervisor and the agent.
  The daemon is shared by every member of the user's shared networks (here the
  sandbox is its only member), so with more members its share per sandbox is smaller.
* \`netns-run default (bridge)\` is what \`netns-run run -d -p HOST_PORT:PORT -- CMD\` gives
  with no network flag: no -T and no --host-loopback, so its sandbox -> host rows are the
  "through the gateway" ones, to the host's own address $HOST_W (the gateway 172.17.0.1
  reaches the host's loopback only with --host-loopback). Its start-up includes starting
  the network daemon (none is running, as for a user's first run); a member joining a
  running daemon is the netns-run column's member start-up row.
* A start-up probe retries its connect every 1 ms with a 100 ms timeout per try.
* 2 vCPUs carry the client, the server, the network process and the sandbox's kernel
  work; request rates and round trips are CPU-contended and compare between columns,
  not with other machines.

## What each column is

\`\`\`
$(cat "$OUT/setups.txt")
\`\`\`

Everything runs inside a throwaway network namespace (\`unshare --net --pid --mount-proc --fork\`,
as root) that holds only \`lo\` and veth pairs the script makes: \`world0\` $HOST_W/24 and
$HOST_W6/64 to a "world" namespace at $WORLD and $WORLD6 (the remote client; the host's default
routes point there
so that pasta finds an uplink, and the world has no route further), and the anchors'
own. Every tool, server and client runs as the unprivileged user \`$BUSER\`
(\`setpriv --reuid=$BUSER --regid=$BUSER --init-groups\`); servers inside a sandbox are
started with \`nsenter -U -n -t PID --preserve-credentials\` (veth: \`nsenter -n\`, as
the namespace is root's). Only veth's wiring is done by root.

## How each row is measured

Servers inside each sandbox: \`iperf3 -s -p $NS_IPERF\`, \`httpd -l :$NS_HTTP\` (bench/httpd: a
Go net/http server answering a 600-byte body) and \`rtt serve -l :$NS_RTT\` (bench/rtt: TCP
echo; \`-u :$NS_UDP\` a UDP counter), published on the host as port+10000 on all addresses (UDP: as
the same port $PUB_UDP, because pasta 2023 drops the replies of a spliced loopback UDP flow whose
port it translates). Host side:
\`iperf3 -s -p $HOST_IPERF\` and \`rtt sink -l :$HOST_PROBE\` (accept and close).

* sandbox -> host: inside, \`iperf3 -c TO_HOST -p $HOST_IPERF -t $IPERF_T [-R] -J\`, where TO_HOST is the
  sandbox's way to the host's loopback (per column above): pasta and netns-run forward the
  sandbox's own 127.0.0.1:$HOST_IPERF (-T). Gbit/s is iperf3's receiver rate, 1 stream. The
  "through the gateway" rows are netns-run's stack path (10.0.2.2, --host-loopback), for reference;
  for the default bridge column, the host's own address $HOST_W through the gateway's outbound NAT.
* published port: \`iperf3 -c ADDR -p 15201 -t $IPERF_T [-R] -J\`, from the host as ADDR=127.0.0.1, and
  from the world namespace as ADDR=$HOST_W (veth: the namespace's own $VETH_NS, routed by the host).
  Over IPv6 (no -R), from the world's $WORLD6 to ADDR=$HOST_W6 (veth: $VETH_NS6), for the tools that
  publish on IPv6 here: pasta (without -4), netns-run (\`-p HOST_PORT:PORT\`, every address; the
  member of the IPv4-only default bridge is reached over IPv4 inside).
* member <-> member: two namespaces on one segment, \`iperf3 -c\` from one to the other
  (veth: a veth pair between two namespaces). netns-run: two members of its shared \`bridge\`
  network (\`netns-run run --network bridge\`), frames switched TAP to TAP by the network daemon.
* HTTP: \`wrk $WRK_ARGS -d${WRK_D}s -H 'Connection: close' http://127.0.0.1:18080/\`, then without the
  header (keep-alive).
* round trip: \`rtt ping -c 127.0.0.1:17001 -t ${LAT_T}s -s 16\`: one TCP connection, one 16-byte message in
  flight, 300 ms warm-up not counted; percentiles of every round trip.
* UDP: \`rtt udp -c 127.0.0.1:$PUB_UDP -t ${UDP_T}s -s 64\`: one socket sends 64-byte datagrams as fast as it
  can; the rate is what the server inside counted, divided by the sending time.
* RSS: VmRSS / VmHWM from /proc/PID/status of the network process: netns-run's supervisor (the
  netns-run process in the host namespace, which runs the gVisor stack and the port forwarders;
  the sandbox agent it re-executes inside the namespace is shown on its own row and is not
  counted), slirp4netns, pasta; for netns-run default (bridge) the sum of the network daemon
  (shared by all members), the supervisor and the agent. Idle = 1 s after the servers are up, before any traffic; after
  load = right after the wrk runs, the last load of the round.
* CPU %: utime+stime of the network process(es), as for RSS, over the run's wall time (100 = one core).
* start-up: time from launching the tool to the first successful TCP connect from inside
  to a host listener (\`rtt probe\`, retrying every 1 ms), $STARTUP_RUNS times per round:
  netns-run \`netns-run --host-loopback -- rtt probe 10.0.2.2:$HOST_PROBE\`; netns-run default
  \`netns-run run -- rtt probe $HOST_W:$HOST_PROBE\` with no daemon running; slirp4netns
  \`unshare -Urn rtt probe 10.0.2.2:$HOST_PROBE &\` then \`slirp4netns --configure --mtu=65520 …\`;
  pasta \`pasta $PASTA_STARTUP_ARGS -- rtt probe $WORLD:$HOST_PROBE\` (its gateway is mapped to the
  host's loopback); veth \`unshare --net rtt probe &\` plus root's \`ip link\` wiring;
  the clients (BENCH_CLIENTS=1) \`rootlesskit … -- rtt probe $HOST_W:$HOST_PROBE\` and
  \`podman run --rm --network slirp4netns IMAGE /rtt probe $HOST_W:$HOST_PROBE\`.

Every timed command holds \`flock $LOCK\` so that two benches on one machine do not overlap;
other work on the machine still can, so expect ±20–30 % between runs (docs/ARCHITECTURE.md,
Measured facts: Measurement noise).
Re-run with \`sudo make bench\` (BENCH_ROUNDS=N for more rounds); reprint a table from raw
samples with \`bench/run.sh --table RAW.tsv\`.
EOF
}

# ================================================================ stage 1
# Root, inside the throwaway network + pid namespaces.
stage1() {
	ip link set lo up
	local links
	links=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -vxE 'lo|tunl0|sit0|ip6tnl0|gre0|gretap0|erspan0|ip_vti0|ip6_vti0|ip6gre0' | tr '\n' ' ')
	[ -z "$links" ] || die "the throwaway namespace is not loopback-only ($links); refusing to run"

	W=$(mktemp -d /tmp/netns-run-bench.XXXXXX) || die "mktemp"
	chmod 0755 "$W"; chown "$BUSER:" "$W"; cd "$W" || die "cd $W"
	RAW="$OUT/raw.tsv"; LOGD="$OUT/logs"; FAILS="$OUT/failures.log"
	RTT="$STAGE/rtt"; HTTPD="$STAGE/httpd"; NR="$STAGE/netns-run"
	BUID=$(id -u "$BUSER")
	mkdir -m 0700 "$W/home" "$W/run" && chown "$BUSER:" "$W/home" "$W/run" || die "make HOME"
	AS_USER+=(HOME="$W/home" XDG_RUNTIME_DIR="$W/run")
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	HOLDER="$W/holder.sh"   # keeps a namespace alive; writes its pid
	printf '#!/bin/sh\necho $$ > "$1"\nexec sleep 2147483647\n' > "$HOLDER"; chmod 755 "$HOLDER"

	setup_world || die "world namespace setup failed"
	# Host-side servers, as the user.
	"${AS_USER[@]}" iperf3 -s -p $HOST_IPERF > "$LOGD/host-iperf3.log" 2>&1 & track $!
	"${AS_USER[@]}" "$RTT" sink -l :$HOST_PROBE > "$LOGD/host-sink.log" 2>&1 & track $!
	sleep 0.3

	local t
	for t in $TOOLS; do
		if ! have_tool "$t"; then
			log "$t: not installed, skipped"; echo "$(label "$t"): not installed, skipped" >> "$OUT/setups.txt"
		fi
	done
	# The Podman columns' storage and image, once for the run (untimed).
	if [ -n "$(among "$TOOLS" podman_slirp4netns podman_netns_run)" ] && have_tool podman_netns_run; then
		podman_setup || log "Podman setup failed (see $LOGD/podman-setup.log); its columns will fail"
	fi
	# Rounds outside, tools inside: every round measures every tool once.
	for ROUND in $(seq "$ROUNDS"); do
		for t in $TOOLS; do have_tool "$t" && measure_round "$t"; done
	done
	return 0
}

have_tool() {
	case $1 in
	slirp4netns) command -v slirp4netns >/dev/null ;;
	pasta|pasta_tap) command -v pasta >/dev/null ;;
	rk_slirp4netns) command -v rootlesskit >/dev/null && command -v rootlessctl >/dev/null && command -v slirp4netns >/dev/null ;;
	rk_netns_run) command -v rootlesskit >/dev/null && command -v rootlessctl >/dev/null ;;
	podman_slirp4netns) command -v podman >/dev/null && command -v runc >/dev/null && command -v slirp4netns >/dev/null ;;
	podman_netns_run) command -v podman >/dev/null && command -v runc >/dev/null ;;
	*) return 0 ;;
	esac
}

# ---- processes: start, track and end only our own, by pid
# AS_USER is an argv prefix (not a function) so that `"${AS_USER[@]}" cmd &`
# gives $! = the pid of cmd (setpriv and env exec). stage1 completes it with
# a HOME and XDG_RUNTIME_DIR of the run's own, removed at the end, so that
# no tool leaves state behind.
AS_USER=(setpriv --reuid="$BUSER" --regid="$BUSER" --init-groups -- env)
OWN=()
declare -A PSTART
starttime() { sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | awk '{print $20}'; }
track() { local p; for p in "$@"; do PSTART[$p]=$(starttime "$p"); OWN+=("$p"); done; }
# kill_own PID...: SIGTERM, up to 2.5 s, then SIGKILL; a pid whose start time
# changed (reused) is left alone.
kill_own() {
	local p ok=() i
	for p in "$@"; do
		[[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -gt 1 ] || continue
		[ -n "${PSTART[$p]:-}" ] && [ "$(starttime "$p")" = "${PSTART[$p]}" ] && ok+=("$p")
	done
	[ ${#ok[@]} -gt 0 ] || return 0
	kill "${ok[@]}" 2>/dev/null
	for p in "${ok[@]}"; do
		for i in $(seq 50); do
			[ "$(starttime "$p")" = "${PSTART[$p]}" ] && [ "$(ps -o stat= -p "$p" 2>/dev/null)" != Z ] || break
			sleep 0.05
		done
		[ "$(starttime "$p")" = "${PSTART[$p]}" ] && [ "$(ps -o stat= -p "$p" 2>/dev/null)" != Z ] && kill -9 "$p" 2>/dev/null
	done
	return 0
}
cleanup() {
	local i
	for ((i = ${#OWN[@]} - 1; i >= 0; i--)); do kill_own "${OWN[$i]}"; done
	cd /; rm -rf "$W"
	# Podman's storage holds files of the user's subordinate ids: root removes it.
	[ -n "${PMD:-}" ] && rm -rf "$PMD"
	return 0
}
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [[ "$st" != Z* ]]; }
wait_file() { local i; for i in $(seq 400); do [ -s "$1" ] && return 0; sleep 0.025; done; return 1; }
child_of() { ps -o pid= --ppid "$1" | awk 'NR==1{print $1}'; }
# find_holder ROOT NSPID: the descendant of ROOT whose pid in its own (maybe
# nested) pid namespace is NSPID, i.e. the holder that wrote NSPID; works
# whether or not the tool gave the sandbox a pid namespace.
find_holder() {
	local todo=("$1") p c
	while [ ${#todo[@]} -gt 0 ]; do
		p=${todo[0]}; todo=("${todo[@]:1}")
		for c in $(ps -o pid= --ppid "$p"); do
			[ "$(awk '/^NSpid:/{print $NF}' /proc/"$c"/status 2>/dev/null)" = "$2" ] && { echo "$c"; return 0; }
			todo+=("$c")
		done
	done
	return 1
}
ppid_of() { sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | awk '{print $2}'; }
# wait until pid $1 is in a new netns (with $2=user: and its uid map is written)
wait_ns() {
	local me n i; me=$(readlink /proc/self/ns/net)
	for i in $(seq 5000); do
		n=$(readlink /proc/"$1"/ns/net 2>/dev/null) || return 1
		if [ "$n" != "$me" ]; then
			[ "${2:-}" != user ] && return 0
			[ "$(awk 'NR==1{print $2}' /proc/"$1"/uid_map 2>/dev/null)" = "$BUID" ] && return 0
		fi
		sleep 0.001
	done
	return 1
}

# ---- recording
rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${ROUND:-}" >> "$RAW"; }
# failed METRIC REASON [LOGFILE]: a "fail" sample, with the reason in failures.log
failed() {
	rec "$T" "$1" fail
	{ echo "[round $ROUND] $(label "$T") $1: $2"; [ -n "${3:-}" ] && [ -f "$3" ] && tail -n 5 "$3" | sed 's/^/    /'; } >> "$FAILS"
	log "$T $1: FAIL: $2"
}
# locked CMD...: serialise timed measurements machine-wide (any tool that takes $LOCK)
locked() { ( flock -w 900 9 || { echo "lock $LOCK busy" >&2; exit 99; }; "$@" ) 9>>"$LOCK"; }
sum_status() { # FIELD PID...: sum of a /proc/PID/status field in kB
	local f=$1 s=0 p v; shift
	for p in "$@"; do v=$(awk -v f="$f:" '$1==f{print $2}' /proc/"$p"/status 2>/dev/null); s=$((s + ${v:-0})); done
	echo $s
}
cpu_ticks() { local s=0 p v; for p in "$@"; do v=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12+$13}'); s=$((s + ${v:-0})); done; echo $s; }
HZ=$(getconf CLK_TCK)
# cpu_run CMD...: run it; leave "<cpu ticks of NET_PIDS> <wall ns>" in $W/cpu.out
cpu_run() {
	local c0 t0 rc
	c0=$(cpu_ticks $NET_PIDS); t0=$(date +%s%N)
	"$@"; rc=$?
	echo "$(($(cpu_ticks $NET_PIDS) - c0)) $(($(date +%s%N) - t0))" > "$W/cpu.out"
	return $rc
}
rec_cpu() { [ -n "$NET_PIDS" ] && rec "$T" "$1" "$(awk -v hz="$HZ" '{printf "%d", $1/hz/($2/1e9)*100}' "$W/cpu.out")"; return 0; }
# crashed STEP: true (and noted) when a network process has died
crashed() {
	local p
	for p in $NET_PIDS; do
		alive "$p" && continue
		failed "crash" "network process $p died during $1 (the rest of this round is skipped)"
		return 0
	done
	return 1
}

# ---- the world: the remote client's namespace
setup_world() {
	rm -f "$W/world.pid"
	unshare --net "$HOLDER" "$W/world.pid" & track $!; WORLD_PID=$!
	wait_file "$W/world.pid" || return 1
	ip link add world0 type veth peer name eth0 netns "$WORLD_PID" || return 1
	ip addr add $HOST_W/24 dev world0 && ip link set world0 up || return 1
	# pasta copies the host's default route and address: point it at the
	# world, whose own routes end at the host (nothing leaves the namespaces).
	ip route add default via $WORLD dev world0 || return 1
	# IPv6 likewise (the in_world6 row), without duplicate address detection
	# so that the addresses work at once.
	ip -6 addr add $HOST_W6/64 dev world0 nodad && ip -6 route add default via $WORLD6 dev world0 || return 1
	# The veth anchor's "remote" client is routed by the host.
	sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	nsenter -n -t "$WORLD_PID" sh -c "ip link set lo up && ip addr add $WORLD/24 dev eth0 && ip -6 addr add $WORLD6/64 dev eth0 nodad && ip link set eth0 up && ip route add 198.18.1.0/24 via $HOST_W && ip -6 route add ${VETH_HOST6%1}/64 via $HOST_W6" || return 1
	WORLD_ENTER=(nsenter -n -t "$WORLD_PID" -- "${AS_USER[@]}")
}

# ================================================================ tools
# tool_NAME_start sets:
#   NS_PID     a pid in the sandbox's namespaces (for nsenter)
#   NS_ENTER   argv prefix that runs a command in the sandbox as the user
#   NET_PIDS   the network process(es) in the host namespace ("" = kernel)
#   TO_HOST    the sandbox's address for the host's 127.0.0.1 listeners
#   PUB_LO, PUB_WORLD, PUB_OFF: the published ports are PUB_LO:(port+PUB_OFF)
#              from the host, PUB_WORLD:(port+PUB_OFF) from the world
#   PUB_WORLD6 the same from the world over IPv6, or NO_V6 the reason there
#              is none (measure_round clears both)
#   TO_HOST_GW (optional) the sandbox's address for the host through the
#              gateway's stack (the "through the gateway" rows)
#   DESC       the exact setup, for BENCHMARKS.md
# tool_NAME_stop ends it; tool_NAME_startup prints ms from launch to first
# connect; tool_NAME_member measures member <-> member (optional);
# tool_NAME_prestartup (optional) runs before each start-up, outside the lock.
ns_user_enter() { NS_ENTER=("${AS_USER[@]}" nsenter -U -n -t "$NS_PID" --preserve-credentials --); }
since_ms() { # T0_NS FILE: ms until the epoch-ns timestamp on FILE's last line
	local t1; t1=$(tail -n 1 "$2" 2>/dev/null)
	[[ "$t1" =~ ^[0-9]+$ ]] || { echo "probe printed '${t1}'"; return 1; }
	awk -v a="$1" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1e6}'
}

# -- kernel veth pair between the host namespace and a root-made namespace
tool_veth_start() {
	DESC="root: unshare --net holder; ip link add vb0 type veth peer name vb1 netns PID; host $VETH_HOST/24 and $VETH_HOST6/64, ns $VETH_NS/24 and $VETH_NS6/64 (MTU 1500, offloads on), ns default routes via the host's. No proxy: clients connect to $VETH_NS (IPv6: [$VETH_NS6]) directly (the world client through the host's routing); the ns reaches the host at $VETH_HOST."
	rm -f "$W/ns.pid"
	unshare --net "$HOLDER" "$W/ns.pid" & track $!; NS_PID=$!
	wait_file "$W/ns.pid" || return 1
	ip link add vb0 type veth peer name vb1 netns "$NS_PID" || return 1
	ip addr add $VETH_HOST/24 dev vb0 && ip -6 addr add $VETH_HOST6/64 dev vb0 nodad && ip link set vb0 up || return 1
	nsenter -n -t "$NS_PID" sh -c "ip link set lo up && ip addr add $VETH_NS/24 dev vb1 && ip -6 addr add $VETH_NS6/64 dev vb1 nodad && ip link set vb1 up && ip route add default via $VETH_HOST && ip -6 route add default via $VETH_HOST6" || return 1
	NS_ENTER=(nsenter -n -t "$NS_PID" -- "${AS_USER[@]}")
	NET_PIDS=""; TO_HOST=$VETH_HOST; PUB_LO=$VETH_NS; PUB_WORLD=$VETH_NS; PUB_WORLD6=$VETH_NS6; PUB_OFF=0
}
tool_veth_stop() { kill_own "$NS_PID"; ip link del vb0 2>/dev/null; return 0; }
tool_veth_startup() {
	local t0 p
	rm -f "$W/probe.out"; t0=$(date +%s%N)
	unshare --net "$RTT" probe -timeout 10s $VETH_HOST:$HOST_PROBE > "$W/probe.out" 2>>"$LOGD/veth-startup.log" & p=$!
	if wait_ns "$p"; then
		ip link add vs0 type veth peer name vs1 netns "$p" && ip addr add $VETH_HOST/24 dev vs0 && ip link set vs0 up &&
			nsenter -n -t "$p" sh -c "ip link set lo up && ip addr add $VETH_NS/24 dev vs1 && ip link set vs1 up && ip route add default via $VETH_HOST"
	fi
	wait "$p"; ip link del vs0 2>/dev/null
	since_ms "$t0" "$W/probe.out"
}
# member <-> member on a segment: for the kernel, two namespaces joined by a veth pair
tool_veth_member() {
	local a b j f v
	rm -f "$W/mma.pid" "$W/mmb.pid"
	unshare --net "$HOLDER" "$W/mma.pid" & track $!; a=$!
	unshare --net "$HOLDER" "$W/mmb.pid" & track $!; b=$!
	if wait_file "$W/mma.pid" && wait_file "$W/mmb.pid" &&
		ip link add ma0 netns "$a" type veth peer name mb0 netns "$b" &&
		nsenter -n -t "$a" sh -c "ip link set lo up && ip addr add $MM_A/24 dev ma0 && ip link set ma0 up" &&
		nsenter -n -t "$b" sh -c "ip link set lo up && ip addr add $MM_B/24 dev mb0 && ip link set mb0 up"; then
		nsenter -n -t "$b" -- "${AS_USER[@]}" iperf3 -s -p $NS_IPERF > "$LOGD/veth-r$ROUND-mm-server.log" 2>&1 & track $!
		local srv=$!; sleep 0.3
		for j in "" -R; do
			f="$LOGD/veth-r$ROUND-mm$j.json"
			locked timeout -k 3 $((IPERF_T + 20)) nsenter -n -t "$a" -- "${AS_USER[@]}" iperf3 -c $MM_B -p $NS_IPERF -t "$IPERF_T" $j -J > "$f" 2>&1
			v=$(iperf_gbps "$f")
			if [[ "$v" =~ ^[0-9.]+$ ]]; then rec "$T" "mm${j/-/_}" "$v"; else failed "mm${j/-/_}" "$v" "$f"; fi
		done
		kill_own "$srv"
	else
		failed mm "could not wire the two member namespaces"
	fi
	kill_own "$a" "$b"
}

# -- slirp4netns --mtu 65520, attached to an `unshare -Urn` namespace; ports via its API
SLIRP_FLAGS="--configure --mtu=65520 --enable-sandbox --enable-seccomp"   # podman's and rootlesskit's choice
tool_slirp4netns_start() {
	DESC="as $BUSER: unshare -Urn holder; slirp4netns $SLIRP_FLAGS --api-socket S --ready-fd 3 PID tap0; per port via S: {\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp|udp\",\"host_addr\":\"0.0.0.0\",\"host_port\":p+10000,\"guest_port\":p}}; the ns reaches the host's 127.0.0.1 at 10.0.2.2."
	rm -f "$W/ns.pid" "$W/slirp.sock" "$W/ready"; mkfifo "$W/ready"; chown "$BUSER:" "$W/ready"
	"${AS_USER[@]}" unshare -Urn "$HOLDER" "$W/ns.pid" & track $!; NS_PID=$!
	wait_file "$W/ns.pid" || return 1
	"${AS_USER[@]}" slirp4netns $SLIRP_FLAGS --api-socket "$W/slirp.sock" --ready-fd 3 "$NS_PID" tap0 \
		3>"$W/ready" >> "$LOGD/slirp4netns.log" 2>&1 & track $!; SLIRP_PID=$!
	local r p
	read -r -N1 -t 10 r < "$W/ready" || return 1
	for p in "$NS_IPERF $((NS_IPERF + 10000)) tcp" "$NS_HTTP $((NS_HTTP + 10000)) tcp" "$NS_RTT $((NS_RTT + 10000)) tcp" "$NS_UDP $PUB_UDP udp"; do
		set -- $p
		timeout 10 "${AS_USER[@]}" "$STAGE/slirpctl" "$W/slirp.sock" \
			"{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"$3\",\"host_addr\":\"0.0.0.0\",\"host_port\":$2,\"guest_port\":$1}}" \
			>> "$LOGD/slirp4netns.log" 2>&1 || return 1
	done
	ns_user_enter; NET_PIDS="$SLIRP_PID"; TO_HOST=10.0.2.2; PUB_LO=127.0.0.1; PUB_WORLD=$HOST_W; PUB_OFF=10000
	NO_V6="published on IPv4 only, 0.0.0.0"
}
tool_slirp4netns_stop() { kill_own "$SLIRP_PID" "$NS_PID"; }
tool_slirp4netns_startup() {
	local t0 p s
	rm -f "$W/probe.out"; t0=$(date +%s%N)
	"${AS_USER[@]}" unshare -Urn "$RTT" probe -timeout 10s 10.0.2.2:$HOST_PROBE > "$W/probe.out" 2>>"$LOGD/slirp4netns-startup.log" & p=$!
	if wait_ns "$p" user; then
		"${AS_USER[@]}" slirp4netns $SLIRP_FLAGS "$p" tap0 >> "$LOGD/slirp4netns-startup.log" 2>&1 & s=$!
		track "$s"
	fi
	wait "$p"; [ -n "${s:-}" ] && kill_own "$s"
	since_ms "$t0" "$W/probe.out"
}

# -- pasta (Debian's passt), namespace-running mode: pasta [opts] -- CMD
PASTA_PORTS="-t $((NS_IPERF + 10000)):$NS_IPERF,$((NS_HTTP + 10000)):$NS_HTTP,$((NS_RTT + 10000)):$NS_RTT -u $PUB_UDP:$NS_UDP"
# Both families (no -4): pasta binds its -t ports on IPv4 and IPv6 (the
# in_world6 row) and copies the host's IPv6 address and route too.
pasta_start() { # SANDBOX_TO_HOST_ADDR
	PASTA_ARGS="-f -q --config-net $PASTA_PORTS -T $HOST_IPERF -U none"
	rm -f "$W/ns.pid"
	"${AS_USER[@]}" pasta $PASTA_ARGS -- "$HOLDER" "$W/ns.pid" >> "$LOGD/pasta.log" 2>&1 & track $!; PASTA_PID=$!
	wait_file "$W/ns.pid" || return 1
	# pasta runs CMD in a new pid namespace: find the holder's pid in ours
	NS_PID=$(find_holder "$PASTA_PID" "$(cat "$W/ns.pid")") || return 1
	track "$NS_PID"; ns_user_enter
	NET_PIDS="$PASTA_PID"; TO_HOST=$1; PUB_LO=127.0.0.1; PUB_WORLD=$HOST_W; PUB_WORLD6=$HOST_W6; PUB_OFF=10000
}
# splice: the sandbox reaches the host's loopback through -T (socket to
# socket); loopback clients of -t ports are spliced too; the world client
# takes pasta's tap path.
tool_pasta_start() {
	pasta_start 127.0.0.1 || return 1
	DESC="as $BUSER: pasta $PASTA_ARGS -- holder; the ns reaches the host's 127.0.0.1:$HOST_IPERF at its own 127.0.0.1 (-T, splice path); host loopback clients are spliced, world clients take the tap path. pasta copies the host's addresses $HOST_W and $HOST_W6 and gateways $WORLD and $WORLD6."
}
tool_pasta_stop() { kill_own "$PASTA_PID" "$NS_PID"; }
# No forwarding at start-up (as netns-run's probe has none): pasta's default
# "auto" forwarding scans the host's ports first.
PASTA_STARTUP_ARGS="-f -q -4 --config-net -t none -u none -T none -U none"
tool_pasta_startup() {
	local t0
	rm -f "$W/probe.out"; t0=$(date +%s%N)
	timeout 20 "${AS_USER[@]}" pasta $PASTA_STARTUP_ARGS -- "$RTT" probe -timeout 10s $WORLD:$HOST_PROBE > "$W/probe.out" 2>>"$LOGD/pasta-startup.log"
	since_ms "$t0" "$W/probe.out"
}
# tap: the sandbox reaches the host through its gateway address (pasta maps
# it to the host's loopback), i.e. pasta's own TCP translation.
tool_pasta_tap_start() {
	pasta_start $WORLD || return 1
	DESC="as $BUSER: pasta $PASTA_ARGS -- holder (same as pasta), but the ns reaches the host's loopback through its gateway $WORLD (tap path)."
}
tool_pasta_tap_stop() { tool_pasta_stop; }
tool_pasta_tap_startup() { tool_pasta_startup; }

# -- netns-run
# No HOST_IP, as a user types -p: every IPv4 and IPv6 address of the host.
NR_PUBS="-p $((NS_IPERF + 10000)):$NS_IPERF -p $((NS_HTTP + 10000)):$NS_HTTP -p $((NS_RTT + 10000)):$NS_RTT -p $PUB_UDP:$NS_UDP/udp"
# netns-run's private network (one member, the stack in the netns-run process
# itself, 10.0.2.0/24): the setup this bench compares. Newer netns-run joins a
# shared network by default and needs --network private for it.
nr_net() { "$NR" --help 2>&1 | grep -q -- '--network string' && echo "--network private"; }
# -T (as pasta's): the sandbox's 127.0.0.1:HOST_IPERF is the host's, spliced.
nr_tcp_ns() { "$NR" --help 2>&1 | grep -q -- '--tcp-ns' && echo "-T $HOST_IPERF"; }
nr_start() { # EXTRA_FLAGS...
	NR_ARGS="$(nr_net) --host-loopback $(nr_tcp_ns) $* $NR_PUBS"
	rm -f "$W/ns.pid"
	"${AS_USER[@]}" "$NR" $NR_ARGS -- "$HOLDER" "$W/ns.pid" >> "$LOGD/$T.log" 2>&1 & track $!; NR_PID=$!
	wait_file "$W/ns.pid" || return 1
	# The holder's parent is the sandbox agent (netns-run re-executed inside
	# the namespaces; pid 1 there when netns-run makes a pid namespace).
	NS_PID=$(find_holder "$NR_PID" "$(cat "$W/ns.pid")") || return 1
	track "$NS_PID"
	AGENT_PID=$(ppid_of "$NS_PID")
	ns_user_enter
	# The network process is the supervisor: the netns-run process in the
	# host namespace that runs the gVisor stack and the forwarders.
	NET_PIDS="$NR_PID"; TO_HOST=10.0.2.2; PUB_LO=127.0.0.1; PUB_WORLD=$HOST_W; PUB_WORLD6=$HOST_W6; PUB_OFF=10000
	local how="at 10.0.2.2 (--host-loopback, through gVisor)"
	if [ -n "$(nr_tcp_ns)" ]; then
		TO_HOST=127.0.0.1; TO_HOST_GW=10.0.2.2
		how="at its own 127.0.0.1 (-T, a listener made inside, spliced; as pasta -T), and at 10.0.2.2 through gVisor (--host-loopback; the 'through the gateway' rows)"
	fi
	DESC="as $BUSER: netns-run $NR_ARGS -- holder; the ns reaches the host's 127.0.0.1:$HOST_IPERF $how; TCP loopback clients of published ports take the fast path (a socket connected inside the sandbox, spliced), world clients go through gVisor and keep their address."
}
nr_stop() { kill_own "$NR_PID" "$NS_PID"; }
nr_startup() { # EXTRA_FLAGS...
	local t0
	rm -f "$W/probe.out"; t0=$(date +%s%N)
	timeout 20 "${AS_USER[@]}" "$NR" $(nr_net) --host-loopback "$@" -- "$RTT" probe -timeout 10s 10.0.2.2:$HOST_PROBE > "$W/probe.out" 2>>"$LOGD/$T-startup.log"
	since_ms "$t0" "$W/probe.out"
}
# Segments: two members of the shared default network (hosted by the
# per-user network daemon) run iperf3 between them, frames switched TAP to
# TAP, also while a capture of the network takes every frame (the cost of
# a capture when on); then the daemon's RSS with 1, 10 and 100 idle
# members, and the time a member takes to start. Only the TAP column:
# shared networks switch TAP frames, so the packet link does not apply.
nr_member() {
	local why="" j f v n d t0 rss1 rss cap names=(mm-server)
	[ -n "$(nr_net)" ] || why="segments not yet implemented"
	[ "$T" = netns_run ] || why="shared networks need a TAP"
	if [ -n "$why" ]; then
		for m in mm mm_R mm_cap seg_rss1 seg_rss10 seg_rss100 seg_per_member member_startup_ms; do rec "$T" $m "n/a:$why"; done
		return 0
	fi
	"${AS_USER[@]}" "$NR" run -d --name mm-server --network bridge -- iperf3 -s -p $NS_IPERF >> "$LOGD/$T-mm.log" 2>&1
	sleep 0.5
	for j in "" -R; do
		f="$LOGD/$T-r$ROUND-mm$j.json"
		locked timeout -k 3 $((IPERF_T + 20)) "${AS_USER[@]}" "$NR" run --network bridge -- \
			iperf3 -c 172.17.0.2 -p $NS_IPERF -t "$IPERF_T" $j -J > "$f" 2>>"$LOGD/$T-mm.log"
		v=$(iperf_gbps "$f")
		if [[ "$v" =~ ^[0-9.]+$ ]]; then rec "$T" "mm${j/-/_}" "$v"; else failed "mm${j/-/_}" "$v" "$f"; fi
	done
	# The same while a user's capture of the network writes every frame
	# (pcap, full frames) to /dev/null; it says "capturing on network"
	# once the switch's tap is set.
	rm -f "$W/capture.err"
	"${AS_USER[@]}" "$NR" network capture bridge -w /dev/null 2>"$W/capture.err" & track $!; cap=$!
	f="$LOGD/$T-r$ROUND-mm-cap.json"
	if wait_file "$W/capture.err"; then
		locked timeout -k 3 $((IPERF_T + 20)) "${AS_USER[@]}" "$NR" run --network bridge -- \
			iperf3 -c 172.17.0.2 -p $NS_IPERF -t "$IPERF_T" -J > "$f" 2>>"$LOGD/$T-mm.log"
		v=$(iperf_gbps "$f")
		if [[ "$v" =~ ^[0-9.]+$ ]]; then rec "$T" mm_cap "$v"; else failed mm_cap "$v" "$f"; fi
	else
		failed mm_cap "network capture bridge did not start"
	fi
	kill_own "$cap"
	cat "$W/capture.err" >> "$LOGD/$T-mm.log"
	# A member's start-up: until its command (true) has run on the segment.
	t0=$(date +%s%N)
	"${AS_USER[@]}" "$NR" run --network bridge -- true >> "$LOGD/$T-mm.log" 2>&1 &&
		rec "$T" member_startup_ms "$(( ($(date +%s%N) - t0) / 1000000 ))"
	d=$(pgrep -u "$BUSER" -f -- "$NR daemon" | head -1)
	if [ -z "$d" ]; then
		failed seg_rss1 "no network daemon found"
	else
		rss1=$(sum_status VmRSS "$d"); rec "$T" seg_rss1 "$rss1"
		for n in 10 100; do
			while [ "${#names[@]}" -lt $n ]; do
				"${AS_USER[@]}" "$NR" run -d --name "mm-idle-${#names[@]}" --network bridge -- sleep 600 >> "$LOGD/$T-mm.log" 2>&1 || break
				names+=("mm-idle-${#names[@]}")
			done
			sleep 1
			rss=$(sum_status VmRSS "$d"); rec "$T" "seg_rss$n" "$rss"
		done
		rec "$T" seg_per_member "$(( (rss - rss1) / 99 ))"
	fi
	# Only the members started here: the column's own sandbox runs on.
	"${AS_USER[@]}" "$NR" rm -f "${names[@]}" >/dev/null 2>&1
	return 0
}
tool_netns_run_start() { nr_start; }
tool_netns_run_stop() { nr_stop; }
tool_netns_run_startup() { nr_startup; }
tool_netns_run_member() { nr_member; }
tool_netns_run_packet_start() { nr_start --link-mode packet; }
# The default path, exactly as a user types it: netns-run run -d -p ... --
# CMD, no network flag, so the sandbox joins the shared network bridge
# (172.17.0.0/16), hosted by the per-user network daemon, which also serves
# the published ports. Neither -T nor --host-loopback: the sandbox reaches
# the host only through the gateway's stack, at the host's own address
# $HOST_W (outbound NAT; the gateway 172.17.0.1 reaches the host's
# loopback only with --host-loopback). NET_PIDS is all of the sandbox's
# netns-run processes: the daemon (shared by every member of the user's
# shared networks; here the only member), the supervisor (`netns-run run`,
# detached) and the agent (netns-run-sandbox, pid 1 inside). The daemon
# is the user's, started by netns-run on demand and gone 2 s after its last
# member: it is looked at, never signalled, and every start waits for the
# last one's to end, so that each round sees a fresh daemon, as a user's
# first run does.
NRD_NAME=nrb-default
nrd_daemon_pid() { ps -u "$BUSER" -o pid=,args= | awk -v a="$NR daemon" 'substr($0, index($0, $2)) == a {print $1; exit}'; }
nrd_daemon_gone() {
	local i
	for i in $(seq 200); do [ -z "$(nrd_daemon_pid)" ] && return 0; sleep 0.05; done
	echo "bench: the network daemon of the last bridge member is still running" >&2
	return 1
}
tool_netns_run_default_start() {
	local a
	DESC="as $BUSER: netns-run run -d --name $NRD_NAME $NR_PUBS -- holder (no network flag: the default shared network bridge, 172.17.0.0/16, eth0 172.17.0.2; no -T, no --host-loopback); published ports served by the per-user network daemon (netns-run daemon); the ns reaches the host at its address $HOST_W:$HOST_IPERF through the gateway's stack (outbound NAT; 'through the gateway' rows; the sandbox -> host rows proper, -T, do not apply); TCP loopback clients of published ports take the daemon's fast path, world clients (IPv4 and IPv6) go through gVisor to the member's IPv4 address. RSS/CPU: the sum of the daemon (shared by all members; here the only one), the supervisor and the agent."
	SUP_PID=""; NS_PID=""
	nrd_daemon_gone || return 1
	rm -f "$W/ns.pid"
	timeout 30 "${AS_USER[@]}" "$NR" run -d --name "$NRD_NAME" $NR_PUBS -- "$HOLDER" "$W/ns.pid" >> "$LOGD/$T.log" 2>&1 || return 1
	wait_file "$W/ns.pid" || return 1
	# The agent is Docker's State.Pid; its parent, the supervisor.
	AGENT_PID=$(timeout 10 "${AS_USER[@]}" "$NR" inspect -f '{{.State.Pid}}' "$NRD_NAME" 2>>"$LOGD/$T.log")
	[[ "$AGENT_PID" =~ ^[0-9]+$ ]] && [ "$AGENT_PID" -gt 1 ] || return 1
	SUP_PID=$(ppid_of "$AGENT_PID"); track "$SUP_PID"
	a=$(ps -o args= -p "$SUP_PID"); [[ "$a" == "$NR run "* ]] || { echo "bench: the agent's parent is '$a', not netns-run run" >&2; return 1; }
	NS_PID=$(find_holder "$AGENT_PID" "$(cat "$W/ns.pid")") || return 1
	track "$NS_PID"; ns_user_enter
	DAEMON_PID=$(nrd_daemon_pid); [ -n "$DAEMON_PID" ] || return 1
	NET_PIDS="$DAEMON_PID $SUP_PID $AGENT_PID"; TO_HOST_GW=$HOST_W
	PUB_LO=127.0.0.1; PUB_WORLD=$HOST_W; PUB_WORLD6=$HOST_W6; PUB_OFF=10000
	NO_OUT="no -T by default; see the gateway rows"
}
# Through the tool, as a user ends it; then the supervisor is waited for.
tool_netns_run_default_stop() {
	timeout 20 "${AS_USER[@]}" "$NR" rm -f "$NRD_NAME" >> "$LOGD/$T.log" 2>&1
	[ -n "${SUP_PID:-}" ] && kill_own "$SUP_PID"
	[ -n "${NS_PID:-}" ] && kill_own "$NS_PID"
	return 0
}
# A first run's start-up: with no daemon running, so that it includes
# starting the daemon (tool_NAME_prestartup runs before the lock is taken).
tool_netns_run_default_prestartup() { nrd_daemon_gone; }
tool_netns_run_default_startup() {
	local t0
	rm -f "$W/probe.out"; t0=$(date +%s%N)
	timeout 20 "${AS_USER[@]}" "$NR" run -- "$RTT" probe -timeout 10s $HOST_W:$HOST_PROBE > "$W/probe.out" 2>>"$LOGD/$T-startup.log"
	since_ms "$t0" "$W/probe.out"
}
# The bridge's member <-> member and daemon rows are the netns-run column's.
tool_netns_run_default_member() {
	local m
	for m in mm mm_R mm_cap seg_rss1 seg_rss10 seg_rss100 seg_per_member member_startup_ms; do rec "$T" $m "n/a:see the netns-run column"; done
}
tool_netns_run_packet_stop() { nr_stop; }
tool_netns_run_packet_startup() { nr_startup --link-mode packet; }
tool_netns_run_packet_member() { nr_member; }

# -- the clients of the slirp4netns command line: RootlessKit (what rootless
# Docker runs) and rootless Podman, each once on the reference slirp4netns
# and once on netns-run as slirp4netns ($STAGE/slirp4netns, a link to
# netns-run, as `make install` makes it). Each pair differs in that binary
# only, so the "through netns-run / through slirp4netns" ratios are the
# binary's share of what the client's user sees. Both clients pass
# --disable-host-loopback (Docker's and Podman's default): the sandbox's
# way to the host is the host's own address $HOST_W, dialled by the slirp
# as any outbound connection (its NAT, the path a container's traffic to
# the world takes). Published ports are the clients' own forwarders
# (RootlessKit's builtin port driver, Podman's rootlessport), the same
# program in both columns of a pair, which reach the server inside through
# the namespace's own kernel (a socket made in it), not through the slirp.
# NET_PIDS (RSS, CPU, crash rows) is the slirp4netns process alone: the
# binary the pair swaps, not the forwarder both share.
client_slirp() { # COLUMN: the slirp4netns binary of a client column
	case $1 in *_netns_run) echo "$STAGE/slirp4netns" ;; *) command -v slirp4netns ;; esac
}
# slirp_pid BIN: the pid of the user's process whose argv[0] is exactly BIN
# (the client starts it, not us: it is looked at, never signalled). One
# column runs at a time and each waits for the last one's to end, so there
# is at most one.
slirp_pid() {
	local i p
	for i in $(seq 200); do
		p=$(ps -u "$BUSER" -o pid=,args= | awk -v b="$1" '$2 == b {print $1; exit}')
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.05
	done
	return 1
}
# client_gone BIN: wait (up to 10 s) until no BIN process of the user is
# left and the published ports are free again: the clients end their slirp
# and forwarders themselves, a little after we stop them.
client_gone() {
	local i
	for i in $(seq 200); do
		if [ -z "$(ps -u "$BUSER" -o args= | awk -v b="$1" '$1 == b')" ] &&
			[ -z "$(ss -Hltnu "( sport = :$((NS_IPERF + 10000)) or sport = :$((NS_HTTP + 10000)) or sport = :$((NS_RTT + 10000)) or sport = :$PUB_UDP )" 2>/dev/null)" ]; then
			return 0
		fi
		sleep 0.05
	done
	echo "bench: $1 or a forwarder of the last client column is still running" >&2
	return 1
}

# RootlessKit as dockerd-rootless.sh runs it (moby's contrib script, whose
# defaults are: slirp4netns, MTU 65520, the slirp's sandbox and seccomp if
# it offers them, no host loopback, the builtin port driver, /etc and /run
# copied up); the sandbox is RootlessKit's own namespace, where dockerd
# would run.
RK_FLAGS="--net=slirp4netns --mtu=65520 --slirp4netns-sandbox=auto --slirp4netns-seccomp=auto --disable-host-loopback --port-driver=builtin --copy-up=/etc --copy-up=/run --propagation=rslave"
RK_PORTS="0.0.0.0:$((NS_IPERF + 10000)):$NS_IPERF/tcp 0.0.0.0:$((NS_HTTP + 10000)):$NS_HTTP/tcp 0.0.0.0:$((NS_RTT + 10000)):$NS_RTT/tcp 0.0.0.0:$PUB_UDP:$NS_UDP/udp"
rk_start() {
	local bin p; bin=$(client_slirp "$T")
	DESC="as $BUSER: rootlesskit --state-dir=D $RK_FLAGS --slirp4netns-binary=$bin -- holder; then per port rootlessctl --socket D/api.sock add-ports P (P in $RK_PORTS); servers started in the child's namespaces with nsenter (as the other columns); the ns reaches the host at its address $HOST_W:$HOST_IPERF through the slirp's NAT. RSS/CPU: the slirp4netns process only (its parent, RootlessKit, serves the published ports)."
	RK_PID=""; NS_PID=""
	client_gone "$bin" || return 1
	rm -rf "$W/rk" "$W/ns.pid"
	"${AS_USER[@]}" rootlesskit --state-dir="$W/rk" $RK_FLAGS --slirp4netns-binary="$bin" -- "$HOLDER" "$W/ns.pid" >> "$LOGD/$T.log" 2>&1 & track $!; RK_PID=$!
	wait_file "$W/ns.pid" || return 1
	NS_PID=$(find_holder "$RK_PID" "$(cat "$W/ns.pid")") || return 1
	track "$NS_PID"; ns_user_enter
	SLIRP_PID=$(slirp_pid "$bin") || return 1
	for p in $RK_PORTS; do
		timeout 10 "${AS_USER[@]}" rootlessctl --socket "$W/rk/api.sock" add-ports "$p" >> "$LOGD/$T.log" 2>&1 || return 1
	done
	NET_PIDS="$SLIRP_PID"; TO_HOST=$HOST_W; PUB_LO=127.0.0.1; PUB_WORLD=$HOST_W; PUB_OFF=10000
	NO_V6="published on IPv4 only, 0.0.0.0"
}
rk_stop() { kill_own "$RK_PID" "$NS_PID"; client_gone "$(client_slirp "$T")"; rm -rf "$W/rk"; }
# Launch -> the first connect from inside RootlessKit's namespace to a
# host listener (at the host's address: no host loopback).
rk_startup() {
	local t0 bin; bin=$(client_slirp "$T")
	client_gone "$bin" >/dev/null 2>&1
	rm -rf "$W/rks" "$W/probe.out"; t0=$(date +%s%N)
	timeout 30 "${AS_USER[@]}" rootlesskit --state-dir="$W/rks" $RK_FLAGS --slirp4netns-binary="$bin" -- \
		"$RTT" probe -timeout 10s $HOST_W:$HOST_PROBE > "$W/probe.out" 2>>"$LOGD/$T-startup.log"
	since_ms "$t0" "$W/probe.out"
}
tool_rk_slirp4netns_start() { rk_start; }
tool_rk_slirp4netns_stop() { rk_stop; }
tool_rk_slirp4netns_startup() { rk_startup; }
tool_rk_netns_run_start() { rk_start; }
tool_rk_netns_run_stop() { rk_stop; }
tool_rk_netns_run_startup() { rk_startup; }

# Rootless Podman as the e2e tests run it (runc, vfs storage, cgroupfs, an
# imported image; containers.conf's network_cmd_path names the slirp), with
# Podman's defaults otherwise: --network slirp4netns, ports by rootlessport.
# The image (podman_image) holds the servers and the probe, and the
# container's own command starts the servers; clients inside (the sandbox
# -> host rows) are nsenter'ed into its namespaces, as for the other columns.
PODMAN_PUBS="-p 0.0.0.0:$((NS_IPERF + 10000)):$NS_IPERF -p 0.0.0.0:$((NS_HTTP + 10000)):$NS_HTTP -p 0.0.0.0:$((NS_RTT + 10000)):$NS_RTT -p 0.0.0.0:$PUB_UDP:$NS_UDP/udp"
PODMAN_CMD="/usr/bin/iperf3 -s -p $NS_IPERF & /httpd -l :$NS_HTTP & exec /rtt serve -l :$NS_RTT -u :$NS_UDP"
IMAGE=localhost/netns-run-bench:latest
# podman_image DIR: DIR/podman-image.tar (as root, in stage 0): the bench's
# static rtt and httpd, Debian's iperf3 and a shell, with the libraries
# ldd names for those two (Debian has no static iperf3; no registry here).
podman_image() {
	local r=$1/podman-rootfs f l
	mkdir -p "$r/bin" "$r/usr/bin" "$r/etc" "$r/tmp" || return 1
	chmod 1777 "$r/tmp"   # iperf3 makes its buffers' files in /tmp
	cp "$1/rtt" "$1/httpd" "$r/" && cp "$(command -v iperf3)" "$r/usr/bin/iperf3" && cp "$(readlink -f /bin/sh)" "$r/bin/sh" || return 1
	for f in "$r/usr/bin/iperf3" "$r/bin/sh"; do
		for l in $(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
			cp -L --parents "$l" "$r" || return 1
		done
	done
	tar -C "$r" -cf "$1/podman-image.tar" . && chmod 0644 "$1/podman-image.tar" && rm -rf "$r"
}
# podman_setup (stage 1, once): Podman's files in a directory of their own,
# with a short path: its runtime dir holds sockets named by 64-hex
# container ids, which must fit a unix socket address (108 bytes). Both
# Podman columns share the storage, the imported image and the pause
# process that holds Podman's user namespace (it ends with our pid
# namespace); each has its containers.conf.
podman_setup() {
	local t
	PMD=$(mktemp -d /tmp/nrbpm.XXXXXX) || return 1
	# TMPDIR: podman import stages the image there (default /var/tmp).
	chown "$BUSER:" "$PMD" && chmod 0700 "$PMD" && "${AS_USER[@]}" mkdir -m 0700 "$PMD/run" "$PMD/tmp" || return 1
	printf '[storage]\ndriver = "vfs"\nrunroot = "%s/storage-run"\ngraphroot = "%s/storage"\n' "$PMD" "$PMD" > "$PMD/storage.conf"
	for t in podman_slirp4netns podman_netns_run; do
		printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\nnetwork_cmd_path = "%s"\n' "$(client_slirp $t)" > "$PMD/$t.conf"
	done
	podman_env podman_slirp4netns
	"${PM[@]}" import "$STAGE/podman-image.tar" "$IMAGE" >> "$LOGD/podman-setup.log" 2>&1
}
podman_env() { # [COLUMN]: PM, the argv prefix of podman for COLUMN (default $T), time-boxed
	PM=("${AS_USER[@]}" XDG_RUNTIME_DIR="$PMD/run" TMPDIR="$PMD/tmp" CONTAINERS_CONF="$PMD/${1:-$T}.conf" CONTAINERS_STORAGE_CONF="$PMD/storage.conf" timeout 60 podman)
}
podman_start() {
	local bin; bin=$(client_slirp "$T")
	DESC="as $BUSER: podman run -d --network slirp4netns $PODMAN_PUBS IMAGE /bin/sh -c '$PODMAN_CMD', with containers.conf network_cmd_path=$bin (runc, vfs, cgroupfs; the image: the bench's rtt and httpd, Debian's iperf3); Podman starts it as $bin --disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp --enable-ipv6 -c -e 3 -r 4 --netns-type=path NS tap0, ports by rootlessport; the sandbox -> host clients run in the container's namespaces (nsenter) and reach the host at $HOST_W:$HOST_IPERF through the slirp's NAT. RSS/CPU: the slirp4netns process only (rootlessport serves the published ports)."
	SRV_PIDS=""
	[ -n "${PMD:-}" ] || return 1
	podman_env
	client_gone "$bin" || return 1
	"${PM[@]}" run -d --name "nrb-$T" --network slirp4netns $PODMAN_PUBS "$IMAGE" /bin/sh -c "$PODMAN_CMD" >> "$LOGD/$T.log" 2>&1 || return 1
	NS_PID=$("${PM[@]}" inspect -f '{{.State.Pid}}' "nrb-$T" 2>>"$LOGD/$T.log")
	[[ "$NS_PID" =~ ^[0-9]+$ ]] && [ "$NS_PID" -gt 1 ] || return 1
	ns_user_enter
	SLIRP_PID=$(slirp_pid "$bin") || return 1
	NET_PIDS="$SLIRP_PID"; TO_HOST=$HOST_W; PUB_LO=127.0.0.1; PUB_WORLD=$HOST_W; PUB_OFF=10000
	NO_V6="published on IPv4 only, 0.0.0.0"
}
podman_stop() {
	[ -n "${PMD:-}" ] || return 0
	podman_env
	"${PM[@]}" rm -f -t 0 "nrb-$T" >> "$LOGD/$T.log" 2>&1
	client_gone "$(client_slirp "$T")"
}
# Launch of `podman run` -> the first connect from inside the container to
# a host listener (at the host's address); --rm, as a one-shot job runs.
podman_startup() {
	local t0
	[ -n "${PMD:-}" ] || { echo "no Podman setup"; return 1; }
	podman_env
	client_gone "$(client_slirp "$T")" >/dev/null 2>&1
	rm -f "$W/probe.out"; t0=$(date +%s%N)
	"${PM[@]}" run --rm --network slirp4netns "$IMAGE" /rtt probe -timeout 10s $HOST_W:$HOST_PROBE > "$W/probe.out" 2>>"$LOGD/$T-startup.log"
	since_ms "$t0" "$W/probe.out"
}
tool_podman_slirp4netns_start() { podman_start; }
tool_podman_slirp4netns_servers() { wait_ns_servers; }
tool_podman_slirp4netns_stop() { podman_stop; }
tool_podman_slirp4netns_startup() { podman_startup; }
tool_podman_netns_run_start() { podman_start; }
tool_podman_netns_run_servers() { wait_ns_servers; }
tool_podman_netns_run_stop() { podman_stop; }
tool_podman_netns_run_startup() { podman_startup; }

# ================================================================ measurements
start_ns_servers() {
	SRV_PIDS=""
	"${NS_ENTER[@]}" iperf3 -s -p $NS_IPERF > "$LOGD/$T-r$ROUND-ns-iperf3.log" 2>&1 & track $!; SRV_PIDS="$!"
	"${NS_ENTER[@]}" "$HTTPD" -l :$NS_HTTP > "$LOGD/$T-r$ROUND-ns-httpd.log" 2>&1 & track $!; SRV_PIDS="$SRV_PIDS $!"
	"${NS_ENTER[@]}" "$RTT" serve -l :$NS_RTT -u :$NS_UDP > "$LOGD/$T-r$ROUND-ns-rtt.log" 2>&1 & track $!; SRV_PIDS="$SRV_PIDS $!"
	wait_ns_servers
}
# Ready when all three listen inside and HTTP answers through the published port.
wait_ns_servers() {
	local p
	for p in $(seq 200); do
		if [ "$(nsenter -n -t "$NS_PID" ss -Hltn 2>/dev/null | awk '{print $4}' | grep -cE ":($NS_IPERF|$NS_HTTP|$NS_RTT)\$")" = 3 ] &&
			timeout 3 "${AS_USER[@]}" curl -s -m 2 -o /dev/null "http://$PUB_LO:$((NS_HTTP + PUB_OFF))/"; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

iperf_gbps() { # JSON_FILE: Gbit/s (receiver) or the error
	jq -r 'if .error then "iperf3: " + .error else (.end.sum_received.bits_per_second / 1e9 * 100 | round / 100 | tostring) end' "$1" 2>/dev/null ||
		echo "no iperf3 JSON (see $1)"
}
# iperf METRIC WHERE(ns|host|world) ADDR PORT [-R]
iperf() {
	local m=$1 where=$2 addr=$3 port=$4 j=${5:-} f v
	local -a pre
	case $where in ns) pre=("${NS_ENTER[@]}") ;; host) pre=("${AS_USER[@]}") ;; world) pre=("${WORLD_ENTER[@]}") ;; esac
	f="$LOGD/$T-r$ROUND-$m.json"
	locked cpu_run timeout -k 3 $((IPERF_T + 20)) "${pre[@]}" iperf3 -c "$addr" -p "$port" -t "$IPERF_T" $j -J > "$f" 2>&1
	v=$(iperf_gbps "$f")
	if [[ "$v" =~ ^[0-9.]+$ ]]; then rec "$T" "$m" "$v"; else failed "$m" "$v" "$f"; return 1; fi
}

measure_round() {
	T=$1
	local pub_ok=1 i out
	log "== $(label "$T") (round $ROUND/$ROUNDS)"
	TO_HOST=""; TO_HOST_GW=""; PUB_WORLD6=""; NO_V6=""; NO_OUT=""
	if ! "tool_${T}_start"; then
		failed start "could not start (see $LOGD/)"
		for m in out out_R in_lo in_lo_R in_world in_world_R in_world6 rtt_p50 rtt_p99 udp_pps rps_close rps_ka; do rec "$T" $m fail; done
		"tool_${T}_stop" 2>/dev/null
		return
	fi
	[ "$ROUND" = 1 ] && echo "$(label "$T"): $DESC" >> "$OUT/setups.txt"
	# A column whose sandbox runs the servers itself (Podman: the container's
	# own command, from its image) has tool_NAME_servers wait for them.
	local servers=start_ns_servers
	declare -F "tool_${T}_servers" >/dev/null && servers="tool_${T}_servers"
	if ! "$servers"; then failed servers "servers inside did not come up or the published port does not answer"; pub_ok=0; fi
	sleep 1
	measure_steps "$pub_ok"
	kill_own $SRV_PIDS
	"tool_${T}_stop"
	sleep 0.3
	for i in $(seq "$STARTUP_RUNS"); do
		declare -F "tool_${T}_prestartup" >/dev/null && "tool_${T}_prestartup"
		if out=$(locked "tool_${T}_startup"); then rec "$T" startup_ms "$out"; else failed startup_ms "$out"; fi
	done
}

measure_steps() {
	local pub_ok=$1 f v j m pub=$((NS_IPERF + PUB_OFF))
	if [ -n "$NET_PIDS" ]; then
		rec "$T" rss_idle "$(sum_status VmRSS $NET_PIDS)"
		[ -n "${AGENT_PID:-}" ] && [[ $T == netns_run* ]] && rec "$T" agent_rss "$(sum_status VmRSS "$AGENT_PID")"
	fi
	# sandbox -> host (-R: the host sends on the sandbox's connection)
	[ -n "$NO_OUT" ] && { rec "$T" out "n/a:$NO_OUT"; rec "$T" out_R "n/a:$NO_OUT"; }
	for j in ${TO_HOST:+"" -R}; do
		m=out${j/-/_}
		iperf "$m" ns "$TO_HOST" $HOST_IPERF $j && [ -z "$j" ] && rec_cpu cpu_out
		crashed "$m" && return
	done
	# netns-run: also its stack's own way to the host, without -T
	for j in ${TO_HOST_GW:+"" -R}; do
		m=out_gw${j/-/_}
		iperf "$m" ns "$TO_HOST_GW" $HOST_IPERF $j && [ -z "$j" ] && rec_cpu cpu_out_gw
		crashed "$m" && return
	done
	declare -F "tool_${T}_member" >/dev/null && "tool_${T}_member"
	if [ "$pub_ok" != 1 ]; then
		for m in in_lo in_lo_R in_world in_world_R in_world6 rtt_p50 rtt_p99 udp_pps rps_close rps_ka; do rec "$T" $m fail; done
		return
	fi
	# host -> published port, from loopback and from the world
	for j in "" -R; do
		m=in_lo${j/-/_}
		iperf "$m" host "$PUB_LO" $pub $j && [ -z "$j" ] && rec_cpu cpu_in_lo
		crashed "$m" && return
	done
	for j in "" -R; do
		m=in_world${j/-/_}
		iperf "$m" world "$PUB_WORLD" $pub $j && [ -z "$j" ] && rec_cpu cpu_in_world
		crashed "$m" && return
	done
	# the same over IPv6, where the tool publishes on IPv6
	if [ -n "$PUB_WORLD6" ]; then
		iperf in_world6 world "$PUB_WORLD6" $pub
		crashed in_world6 && return
	else
		rec "$T" in_world6 "n/a:${NO_V6:-not published on IPv6}"
	fi
	# TCP round trips through the published port
	f="$LOGD/$T-r$ROUND-rtt.log"
	locked timeout -k 3 $((LAT_T + 15)) "${AS_USER[@]}" "$RTT" ping -c "$PUB_LO:$((NS_RTT + PUB_OFF))" -t "${LAT_T}s" -s 16 > "$f" 2>&1
	if v=$(grep -o 'p50_us=[0-9.]*' "$f"); then
		rec "$T" rtt_p50 "${v#*=}"; v=$(grep -o 'p99_us=[0-9.]*' "$f"); rec "$T" rtt_p99 "${v#*=}"
	else failed rtt_p50 "rtt ping failed" "$f"; failed rtt_p99 "rtt ping failed"; fi
	crashed rtt && return
	# UDP packet rate through the published port
	f="$LOGD/$T-r$ROUND-udp.log"
	locked timeout -k 3 $((UDP_T + 20)) "${AS_USER[@]}" "$RTT" udp -c "$PUB_LO:$PUB_UDP" -t "${UDP_T}s" -s 64 > "$f" 2>&1
	if v=$(grep -o 'rx_pps=[0-9.]*' "$f"); then rec "$T" udp_pps "${v#*=}"; else failed udp_pps "rtt udp failed" "$f"; fi
	crashed udp && return
	# HTTP through the published port: a new connection per request, then keep-alive
	local url="http://$PUB_LO:$((NS_HTTP + PUB_OFF))/" errs=0
	for m in rps_close rps_ka; do
		f="$LOGD/$T-r$ROUND-wrk-$m.log"
		local -a hdr=(); [ $m = rps_close ] && hdr=(-H 'Connection: close')
		locked cpu_run timeout -k 3 $((WRK_D + 20)) "${AS_USER[@]}" wrk $WRK_ARGS -d"${WRK_D}s" "${hdr[@]}" "$url" > "$f" 2>&1
		v=$(awk '/Requests\/sec/{printf "%d", $2}' "$f")
		if [ -n "$v" ] && [ "$v" -gt 0 ]; then rec "$T" $m "$v"; else failed $m "wrk got no responses" "$f"; fi
		[ $m = rps_close ] && rec_cpu cpu_close
		errs=$((errs + $(awk '/Socket errors/{gsub(/[^0-9 ]/," "); for(i=1;i<=NF;i++) s+=$i} /Non-2xx/{s+=$NF} END{print s+0}' "$f")))
		crashed $m && return
	done
	rec "$T" wrk_errs "$errs"
	if [ -n "$NET_PIDS" ]; then
		rec "$T" rss_after "$(sum_status VmRSS $NET_PIDS)"
		rec "$T" rss_peak "$(sum_status VmHWM $NET_PIDS)"
	fi
}

# ================================================================ main
if [ -n "${BENCH_STAGE:-}" ]; then
	stage1
else
	stage0
fi
