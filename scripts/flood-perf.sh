#!/bin/sh
# flood-perf.sh — replay the hostile captures of internal/flood at full size
# and report, per case, wall time, packets/s, peak RSS (/usr/bin/time -v),
# and what the sensor still reported of the real atexec spliced into (or
# rewritten in) the flood: the registration with its command, its outcome,
# and the atexec alert.
#
# usage: scripts/flood-perf.sh [DIR]   (captures are written to DIR, default
#        /tmp/floods, about 9 GB; they are made once and kept)
#
# Then the variants (internal/flood/variants.go: the same attacks carried
# another way) go through scripts/flood-rate.py, each run beside the mirror
# mix (/tmp/mirror-mix.pcap, MIX to change) in the same minutes: ROUNDS
# rounds (default 3), medians, rate against the mix's.
set -eu

dir=${1:-/tmp/floods}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/floodperf.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
[ -x /usr/bin/time ] || { echo "flood-perf.sh: /usr/bin/time missing (apt-get install -y time)" >&2; exit 1; }
mkdir -p "$dir"
(cd "$root" && go build -o "$work/tschsensor" ./cmd/tschsensor && go build -o "$work/flood" ./pcaps/gen/flood)
atexec=$root/pcaps/impacket-atexec-smb2-clear.pcap

make() { # NAME ARGS...: make DIR/NAME.pcap unless present
	name=$1
	shift
	[ -s "$dir/$name.pcap" ] || "$work/flood" "$@" -splice "$atexec" "$dir/$name.pcap"
}
make syn-1m -kind syn -n 1000000
make handshake1-1m -kind handshake1 -n 1000000
make ooo-1m -kind ooo -n 1000000
make hsheader-1m -kind hsheader -n 1000000
make bigmsg-500 -kind bigmsg -n 500
make bigmsg-2000 -kind bigmsg -n 2000
make rpcreq-100k -kind rpcreq -n 100000
make rpcjunk-100k -kind rpcjunk -n 100000
make rpcrun-100k -kind rpcrun -n 100000
make creates-200k -kind creates -n 200000
make register-1write -kind register -n 600000
make register-xml-2.2m -kind register -n 2200000 -frags-per-write 1
# Actions and Principals between 2 MB of comment on each side, a decoy in the first.
make register-hidden-4m -kind register -n 2097152 -after 2097152 -decoy '<Actions><Exec><Command>decoy.exe</Command></Exec></Actions>' -frags-per-write 1
# The same registration over SMB1: one 1.2 MB WRITE_ANDX.
[ -s "$dir/register-smb1-1write.pcap" ] ||
	"$work/flood" -kind register -n 600000 -splice "$root/pcaps/impacket-atexec-smb1-clear.pcap" "$dir/register-smb1-1write.pcap"

printf '%-20s %8s %8s %12s %9s  %s\n' capture packets "wall s" packets/s "peak RSS" "registration (command, outcome) / atexec alert"
for f in syn-1m handshake1-1m ooo-1m hsheader-1m bigmsg-500 bigmsg-2000 rpcreq-100k rpcjunk-100k rpcrun-100k creates-200k register-1write register-xml-2.2m register-hidden-4m register-smb1-1write; do
	/usr/bin/time -v -o "$work/time" "$work/tschsensor" replay "$dir/$f.pcap" >"$work/out" 2>"$work/err"
	pk=$(sed -n 's/^tschsensor: \([0-9]*\) packets.*/\1/p' "$work/err")
	wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (j = 1; j <= n; j++) s = s * 60 + p[j]; print s }' "$work/time")
	rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f MB", $2 / 1024 }' "$work/time")
	reg=$(grep '"kind":"event"' "$work/out" | grep '"action":"SchRpcRegisterTask"' | grep -c '"command":"cmd.exe".*"outcome":"success"\|"outcome":"success".*"command":"cmd.exe"' || true)
	alert=$(grep -c '"rule":{"id":"atexec"' "$work/out" || true)
	printf '%-20s %8s %8s %12.0f %9s  %s / %s\n' "$f" "$pk" "$wall" "$(echo "$pk $wall" | awk '{ print $1 / ($2 > 0 ? $2 : 0.01) }')" "$rss" "$reg" "$alert"
done

# Variants: the same shapes another tool would send (see internal/flood/variants.go).
make syn135-1m -kind syn135 -n 1000000
make syn139-1m -kind syn139 -n 1000000
make synvlan-1m -kind synvlan -n 1000000
make syn6-1m -kind syn6 -n 1000000
make synports-1m -kind synports -n 1000000
make pipereq-100k -kind pipereq -n 100000
make ioctlreq-100k -kind ioctlreq -n 100000
make smb1pipereq-100k -kind smb1pipereq -n 100000
make rpcreqbatch-100k -kind rpcreqbatch -n 100000
make rpcchannels-1m -kind rpcchannels -n 1000000
make rpcchannels-4m -kind rpcchannels -n 4000000
make createsbatch-200k -kind createsbatch -n 200000
make createscompound-200k -kind createscompound -n 200000
make smb1creates-200k -kind smb1creates -n 200000
make createsconns-1m -kind createsconns -n 1000000
make createsconns-4m -kind createsconns -n 4000000
make bigmsg139-2000 -kind bigmsg139 -n 2000
make bigfrag135-10k -kind bigfrag135 -n 10000
make bigfragdyn-10k -kind bigfragdyn -n 10000
make tinyooo-1m -kind tinyooo -n 1000000
make overlap-500k -kind overlap -n 500000
make stubs-500 -kind stubs -n 500
make createslong-12k -kind createslong -n 12000
make opens-2m -kind opens -n 2000000
make trees-2m -kind trees -n 2000000
make bigmsgrev-500 -kind bigmsgrev -n 500
make sessions-2m -kind sessions -n 2000000
[ -s "${MIX:=/tmp/mirror-mix.pcap}" ] || (cd "$root" && go run ./scripts/mirrormix -o "$MIX")
"$root/scripts/flood-rate.py" -n "${ROUNDS:-3}" -m "$MIX" "$work/tschsensor" \
	$(for v in syn135-1m syn139-1m synvlan-1m syn6-1m synports-1m pipereq-100k ioctlreq-100k smb1pipereq-100k \
		rpcreqbatch-100k rpcchannels-1m rpcchannels-4m createsbatch-200k createscompound-200k smb1creates-200k \
		createsconns-1m createsconns-4m createslong-12k opens-2m trees-2m sessions-2m bigmsgrev-500 bigmsg139-2000 bigfrag135-10k bigfragdyn-10k tinyooo-1m overlap-500k stubs-500; do
		echo "$dir/$v.pcap"
	done)
