#!/usr/bin/env bash
# ensure-test-user.sh [--no-subids] [NAME]: make sure the unprivileged e2e
# test user exists (default netns-test) and has subordinate uid/gid ranges, as
# a normal distro gives a normal user. --no-subids: the user only (the second
# user of the isolation tests, netns-test2, runs no sandboxes). Run as root.
# Idempotent: an existing user and existing ranges are left as they are.
set -euo pipefail

subids=1
if [ "${1:-}" = --no-subids ]; then
	subids=0
	shift
fi
user=${1:-netns-test}
count=65536

if [ "$(id -u)" -ne 0 ]; then
	echo "ensure-test-user: must run as root" >&2
	exit 1
fi

if ! id -u "$user" >/dev/null 2>&1; then
	# No home and no login shell: the e2e launcher gives the user a fresh
	# HOME for each run. --no-user-group would not matter; keep a private
	# group as distros do.
	useradd --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin "$user"
	echo "ensure-test-user: created user $user (uid $(id -u "$user"))"
fi
uid=$(id -u "$user")
if [ "$subids" -eq 0 ]; then
	exit 0
fi

# next_free FILE: the first id at or above 200000 past every range in FILE.
next_free() {
	awk -F: -v min=200000 'NF >= 3 { end = $2 + $3; if (end > min) min = end } END { print min }' "$1"
}

# has_range FILE: does FILE already hold a range for the user (by name or uid)?
has_range() {
	awk -F: -v u="$user" -v id="$uid" '($1 == u || $1 == id) && $3 > 0 { found = 1 } END { exit !found }' "$1"
}

for f in /etc/subuid /etc/subgid; do
	[ -e "$f" ] || install -m 0644 /dev/null "$f"
	if ! has_range "$f"; then
		start=$(next_free "$f")
		echo "$user:$start:$count" >>"$f"
		echo "ensure-test-user: added $user:$start:$count to $f"
	fi
done
