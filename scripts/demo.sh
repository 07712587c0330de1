#!/usr/bin/env bash
# make demo: a sandbox that serves a published port and reaches out to the
# host, all without root. Everything stays on this machine: the "outside"
# the sandbox reaches is a small server on the host's 127.0.0.1, opened to
# it with --host-loopback.
set -euo pipefail
BIN=${1:-bin}
NR=$BIN/netns-run
PROBE=$(cd "$BIN" && pwd)/probe
HOST_PORT=${DEMO_HOST_PORT:-18700}
PUB_PORT=${DEMO_PUBLISHED_PORT:-18080}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a server on the host's loopback (127.0.0.1:$HOST_PORT), for the sandbox to reach"
"$PROBE" serve-tcp "$HOST_PORT" > >(sed -u 's/^/[host server] /') &
pids+=($!)
sleep 0.3

step "netns-run --host-loopback -p 127.0.0.1:$PUB_PORT:80 -- (a sandboxed server on port 80)"
"$NR" --host-loopback -p "127.0.0.1:$PUB_PORT:80" -- /bin/sh -c "
  echo '[sandbox] eth0:' \$(ip -br addr show eth0 2>/dev/null)
  echo '[sandbox] /etc/hosts:'; sed 's/^/[sandbox]   /' /etc/hosts
  gw=\$(ip route show default | awk '{print \$3; exit}')
  echo \"[sandbox] reaching out to the host at its gateway \$gw:$HOST_PORT:\"
  '$PROBE' tcp \$gw:$HOST_PORT 'hello from the sandbox' 2>/dev/null | sed 's/^/[sandbox]   /'; echo
  exec '$PROBE' serve-tcp 80
" > >(sed -u 's/^/  /') 2>&1 &
pids+=($!)

# Wait until the sandboxed server answers through the published port.
for _ in $(seq 50); do
  if out=$("$PROBE" tcp -timeout 1s "127.0.0.1:$PUB_PORT" "hello from the host" 2>/dev/null) && [ -n "$out" ]; then
    break
  fi
  sleep 0.1
done
step "the host calls the published port 127.0.0.1:$PUB_PORT (a loopback client: the sandbox sees 127.0.0.1, served by a socket connected inside it, as with pasta)"
printf '%s\n' "$out" | sed 's/^/  [host client] /'
step "done: the sandbox and its ports are gone when netns-run exits"
