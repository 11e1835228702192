#!/bin/sh
# live-bench.sh: how fast `tschsensor run` captures and decodes, and when the
# kernel starts dropping. A large SMB capture (the biggest ones of the shared
# corpus, concatenated, looped) is replayed with tcpreplay into one end of a
# veth pair in a private network namespace at increasing rates; the sensor
# captures on the other end with 1 and 2 workers. Prints a markdown table
# (docs/live.md keeps the measured one).
#
#   sudo scripts/live-bench.sh [LOOPS]        (default 20 passes of the capture)
#   sudo CAPTURE=/tmp/mirror-mix.pcap RATES=top WORKERS=1 RINGS=64 scripts/live-bench.sh 1
#                                             (a given capture instead, e.g. the mirror-port mix)
#
# Needs root, iproute2, tcpreplay, mergecap (wireshark-common) and Go.
set -eu
cd "$(dirname "$0")/.."
loops=${1:-20}
shared=${SHARED:-../shared/pcaps}
rates=${RATES:-"100 500 1000 top"}
workers_list=${WORKERS:-"1 2"}
# Ring sizes per socket: the default 64 MiB, and a small one to show where
# drops start when the ring cannot absorb a burst.
rings=${RINGS:-"64 4"}

[ "$(id -u)" = 0 ] || { echo "live-bench: needs root (network namespace, AF_PACKET)" >&2; exit 1; }
for t in ip tcpreplay mergecap capinfos go; do
	command -v $t >/dev/null 2>&1 || { echo "live-bench: $t not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/tschsensor-bench.XXXXXX)
ns=tschbench$$
cleanup() {
	[ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

CGO_ENABLED=0 go build -trimpath -o "$work/tschsensor" ./cmd/tschsensor

# The three largest SMB captures, end to end (read only: written to /tmp),
# or $CAPTURE.
caps=${CAPTURE:-$(ls -S "$shared"/*.pcap "$shared"/*.cap 2>/dev/null | head -n 3)}
[ -n "$caps" ] || { echo "live-bench: no captures in $shared" >&2; exit 1; }
mergecap -a -F pcap -w "$work/bench.pcap" $caps
pkts=$(capinfos -T -c -M "$work/bench.pcap" | awk -F'\t' 'NR==2{print $2}')
bytes=$(capinfos -T -d -M "$work/bench.pcap" | awk -F'\t' 'NR==2{print $2}')

ip netns add "$ns"
ip -n "$ns" link add name tx0 mtu 65000 type veth peer name rx0 mtu 65000
ip -n "$ns" link set tx0 up
ip -n "$ns" link set rx0 up

echo "capture: $(echo $caps | xargs -n1 basename | tr '\n' ' ')= $pkts packets, $bytes bytes, looped $loops times"
echo "host: $(nproc) CPUs, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
# Decoding alone, one worker, no capture: the cost per byte for sizing.
set --
for i in $(seq "$loops"); do set -- "$@" "$work/bench.pcap"; done
"$work/tschsensor" replay --observer bench "$@" 2>"$work/replay.err" >/dev/null || true
echo "replay (decode only, 1 worker): $(head -n 1 "$work/replay.err" | sed 's/^tschsensor: //')"
echo
hz=$(getconf CLK_TCK)
echo "| ring MiB | workers | tcpreplay rate | achieved Mbit/s | sent pkts | kernel pkts | decoded pkts | kernel drops | drop % | freezes | captured pkts/s | sensor CPU s | CPU s per Gbit |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for ring in $rings; do
for w in $workers_list; do
	for r in $rates; do
		ip netns exec "$ns" "$work/tschsensor" run -i rx0 --workers "$w" --stats-interval 1h --no-stdout \
			--block-size 1048576 --block-count "$ring" --observer bench >/dev/null 2>"$work/sensor.err" &
		spid=$!
		# Wait for the sockets to be open.
		i=0
		until grep -q "msg=capturing" "$work/sensor.err" 2>/dev/null; do
			i=$((i + 1)); [ $i -lt 100 ] || { cat "$work/sensor.err" >&2; exit 1; }
			sleep 0.1
		done
		if [ "$r" = top ]; then rate="--topspeed"; label="topspeed"; else rate="--mbps $r"; label="$r Mbit/s"; fi
		ip netns exec "$ns" tcpreplay -K --loop "$loops" $rate -i tx0 "$work/bench.pcap" >"$work/replay.out" 2>&1
		# CPU the sensor used (user + system, clock ticks): decoding cost
		# per bit, for sizing. The kernel's share (copying into the ring)
		# runs in the sender's softirq here and is not included.
		ticks=$(awk '{print $14 + $15}' /proc/"$spid"/stat)
		kill -TERM "$spid"; wait "$spid" || true; spid=""
		sent=$(awk '/^Actual:/{print $2}' "$work/replay.out")
		secs=$(awk '/^Actual:/{for(i=1;i<=NF;i++) if($i=="in") print $(i+1)}' "$work/replay.out")
		mbps=$(awk '/^Rated:/{for(i=1;i<=NF;i++) if($i ~ /^Mbps/) print $(i-1)}' "$work/replay.out")
		kp=$(awk '/kernel:/{print $2}' "$work/sensor.err")
		kd=$(awk '/kernel:/{print $4}' "$work/sensor.err")
		dec=$(awk '/^tschsensor: [0-9]+ packets/{print $2}' "$work/sensor.err")
		kf=$(awk '/kernel:/{for(i=1;i<=NF;i++) if($i=="ring") print $(i-1)}' "$work/sensor.err")
		awk -v ring="$ring" -v w="$w" -v l="$label" -v m="$mbps" -v s="$sent" -v kp="$kp" -v dec="$dec" -v kd="$kd" -v kf="$kf" -v t="$secs" \
			-v cpu="$ticks" -v hz="$hz" -v bytes="$bytes" -v loops="$loops" 'BEGIN{
			d = (kp > 0) ? 100 * kd / kp : 0
			pps = (t > 0) ? (kp - kd) / t : 0
			c = cpu / hz
			gbit = bytes * loops * 8 / 1e9
			printf "| %s | %s | %s | %.0f | %d | %d | %d | %d | %.2f | %d | %.0f | %.2f | %.2f |\n", ring, w, l, m, s, kp, dec, kd, d, kf, pps, c, c / gbit
		}'
	done
done
done
