#!/bin/sh
# flood-live.sh — a flood from internal/flood (the atexec spliced inside it)
# replayed with tcpreplay at its top speed into a veth pair in a private
# network namespace, captured live by `tschsensor run`; reports the rate
# reached, kernel drops, and whether the atexec's registration (with its
# command) and its atexec alert came out.
#
#   sudo scripts/flood-live.sh [CAPTURE] [WORKERS]
#        default: the 1,000,000-SYN flood of scripts/flood-perf.sh, 2 workers
#
# Needs root, iproute2, tcpreplay and Go.
set -eu
cd "$(dirname "$0")/.."
cap=${1:-/tmp/floods/syn-1m.pcap}
workers=${2:-2}
[ "$(id -u)" = 0 ] || { echo "flood-live: needs root (network namespace, AF_PACKET)" >&2; exit 1; }
work=$(mktemp -d /tmp/tschflood-live.XXXXXX)
ns=tschflood$$
cleanup() {
	[ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
go build -o "$work/tschsensor" ./cmd/tschsensor
if [ ! -s "$cap" ]; then
	go build -o "$work/flood" ./pcaps/gen/flood
	"$work/flood" -kind syn -n 1000000 -splice pcaps/impacket-atexec-smb2-clear.pcap "$cap"
fi
ip netns add "$ns"
ip -n "$ns" link add name tx0 mtu 9000 type veth peer name rx0 mtu 9000
ip -n "$ns" link set tx0 up
ip -n "$ns" link set rx0 up
ip netns exec "$ns" "$work/tschsensor" run -i rx0 --workers "$workers" --stats-interval 1h --observer flood \
	>"$work/out" 2>"$work/err" &
spid=$!
i=0
until grep -q "msg=capturing" "$work/err" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || { cat "$work/err" >&2; exit 1; }
	sleep 0.1
done
ip netns exec "$ns" tcpreplay -K --topspeed -i tx0 "$cap" >"$work/replay" 2>&1
sleep 1
kill -TERM "$spid"; wait "$spid" || true; spid=""
grep -E '^(Actual|Rated):' "$work/replay"
grep -E 'kernel:|^tschsensor: [0-9]+ packets|memory:|evictions:|MS-TSCH calls|dropped' "$work/err" || true
reg=$(grep '"kind":"event"' "$work/out" | grep '"action":"SchRpcRegisterTask"' | grep -c '"command":"cmd.exe"' || true)
alert=$(grep -c '"rule":{"id":"atexec"' "$work/out" || true)
echo "registration with command: $reg, atexec alert: $alert"
