#!/usr/bin/env bash
# run-e2e.sh [BIN_DIR]: run the e2e suite (BIN_DIR/e2e.test) under the
# launcher (BIN_DIR/outerns), then print "e2e: N passed, N failed, N skipped"
# (top-level tests). Exits with the suite's status. `make e2e` builds
# BIN_DIR first.
#
# As root: makes sure the unprivileged test user exists (E2E_USER, default
# netns-test) and a second one for the isolation tests (E2E_INTRUDER,
# default netns-test2), copies the binaries to a fresh world-readable
# directory (the checkout may be under a 0700 directory such as /root) and
# runs the suite as the first user. As a normal user: runs the suite as that
# user, in a user namespace of its own (the tests that need a second user
# skip). Nothing is written in the checkout.
#
# Environment: E2E_USER, E2E_INTRUDER, E2E_TIMEOUT (go test -timeout,
# default 10m), E2E_RUN (go test -run regexp), E2E_ARGS (more arguments
# for the test binary, e.g. -soak-cycles=10000), E2E_LAUNCHER_TIMEOUT (how
# long the launcher lets the tests run before it kills them; its default is
# 15m).
set -euo pipefail

bin=${1:-bin}
user=${E2E_USER:-netns-test}
intruder=${E2E_INTRUDER:-netns-test2}
timeout=${E2E_TIMEOUT:-10m}
run=${E2E_RUN:-}
here=$(cd "$(dirname "$0")" && pwd)

for f in probe outerns e2e.test; do
	if [ ! -x "$bin/$f" ]; then
		echo "run-e2e: $bin/$f is missing (make e2e builds it)" >&2
		exit 2
	fi
done

testargs=(-test.v -test.count=1 -test.timeout="$timeout")
if [ -n "$run" ]; then
	testargs+=(-test.run="$run")
fi
# shellcheck disable=SC2206 # E2E_ARGS is a list of words
testargs+=(${E2E_ARGS:-})
launchargs=()
if [ -n "${E2E_LAUNCHER_TIMEOUT:-}" ]; then
	launchargs=(-timeout "$E2E_LAUNCHER_TIMEOUT")
fi

log=$(mktemp "${TMPDIR:-/tmp}/netns-run-e2e-log.XXXXXX")
stage=
cleanup() {
	rm -f "$log"
	if [ -n "$stage" ]; then rm -rf "$stage"; fi
}
trap cleanup EXIT

if [ "$(id -u)" -eq 0 ]; then
	"$here/ensure-test-user.sh" "$user"
	"$here/ensure-test-user.sh" --no-subids "$intruder"
	stage=$(mktemp -d /tmp/netns-run-e2e-bin.XXXXXX)
	chmod 0755 "$stage"
	for f in netns-run netns-run-agent probe outerns e2e.test; do
		if [ -e "$bin/$f" ]; then install -m 0755 "$bin/$f" "$stage/$f"; fi
	done
	cmd=("$stage/outerns" -user "$user" -intruder "$intruder" "${launchargs[@]}" -- "$stage/e2e.test" "${testargs[@]}")
else
	cmd=("$bin/outerns" "${launchargs[@]}" -- "$bin/e2e.test" "${testargs[@]}")
fi

echo "run-e2e: ${cmd[*]}"
set +e
"${cmd[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

passed=$(grep -c '^--- PASS' "$log" || true)
failed=$(grep -c '^--- FAIL' "$log" || true)
skipped=$(grep -c '^--- SKIP' "$log" || true)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
	echo "run-e2e: the suite failed (status $status) outside any finished test; counting that as one failure"
	failed=1
fi
echo "e2e: $passed passed, $failed failed, $skipped skipped"
exit "$status"
