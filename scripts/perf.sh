#!/bin/sh
# perf.sh — time tschsensor replay against tcpdump on the same captures.
#
# Builds the sensor, warms the page cache, then runs tcpdump and each sensor
# command RUNS times (default 5), interleaved (tcpdump, sensor, sensor -w 2,
# tcpdump, ...) so that load from other jobs on the machine hits all of them
# alike, and reports per command the median wall time, MB/s (capture file
# bytes), packets/s, the median CPU seconds (user + system, all threads; less
# sensitive than wall time to other jobs on a shared machine), the peak
# resident set size (/usr/bin/time -v), the ratio of the median to
# tcpdump's median, and the paired ratio (the median over rounds of the
# sensor's time over tcpdump's time in the same round). tcpdump -r FILE -w /dev/null reads
# and writes every record and decodes nothing: the floor any pcap consumer
# pays.
#
# usage: scripts/perf.sh [FILE...]    (RUNS=5 and WORKERS=2 from the environment)
#
# Without FILE it uses the two captures of docs/performance.md:
#   /tmp/mirror-mix.pcap  the mirror-port mix, made here by scripts/mirrormix
#                         when missing (deterministic, ~500k packets, 385 MB)
#   /tmp/smb-large.pcap   the SMB bulk copies, made by scripts/make-smb-capture.sh
#                         (needs root; skipped with a note when missing)
set -eu

runs=${RUNS:-5}
workers=${WORKERS:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tschperf.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

[ -x /usr/bin/time ] || { echo "perf.sh: /usr/bin/time missing (apt-get install -y time)" >&2; exit 1; }
command -v tcpdump >/dev/null || { echo "perf.sh: tcpdump missing" >&2; exit 1; }

(cd "$root" && go build -o "$work/tschsensor" ./cmd/tschsensor)
# Older builds have no --workers: measure one worker only.
multi=
"$work/tschsensor" replay -h 2>&1 | grep -q -- '-workers' && multi=1

if [ $# -eq 0 ]; then
	if [ ! -f /tmp/mirror-mix.pcap ]; then
		(cd "$root" && go run ./scripts/mirrormix -o /tmp/mirror-mix.pcap)
	fi
	set -- /tmp/mirror-mix.pcap
	if [ -f /tmp/smb-large.pcap ]; then
		set -- "$@" /tmp/smb-large.pcap
	else
		echo "perf.sh: /tmp/smb-large.pcap missing; make it with sudo scripts/make-smb-capture.sh" >&2
	fi
fi

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "go: $(go version | awk '{print $3}'), tcpdump: $(tcpdump --version 2>&1 | head -1 | awk '{print $3}'), runs: $runs interleaved"

# run TAG CMD...: one timed run, appended to $work/TAG as "seconds rss_kb".
run() {
	tag=$1
	shift
	/usr/bin/time -v -o "$work/time.out" "$@" >/dev/null 2>"$work/stderr" ||
		{ echo "perf.sh: $tag failed:" >&2; cat "$work/stderr" "$work/time.out" >&2; exit 1; }
	awk -F': ' '
		/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (j = 1; j <= n; j++) s = s * 60 + p[j] }
		/User time|System time/ { cpu += $2 }
		/Maximum resident set size/ { rss = $2 }
		END { printf "%.3f %d %.3f\n", s, rss, cpu }' "$work/time.out" >>"$work/$tag"
}

# report TAG NAME: the median line of TAG's runs.
report() {
	cpu=$(awk '{ print $3 }' "$work/$1" | sort -n | awk '{ c[NR] = $1 } END { print c[int((NR + 1) / 2)] }')
	paired=$(paired "$1")
	sort -n "$work/$1" | awk -v name="$2" -v paired="$paired" -v b="$bytes" -v p="$packets" -v base="$base" -v cpu="$cpu" '
		{ t[NR] = $1; r[NR] = $2 }
		END {
			m = t[int((NR + 1) / 2)]; rss = r[int((NR + 1) / 2)]
			if (m <= 0) m = 0.001
			ratio = base > 0 ? sprintf("%.2f", m / base) : "1.00"
			printf "%-46s %8.3f %6s %7s %7.3f %9.1f %11.0f %6.0f MB\n", name, m, ratio, paired, cpu, b / m / 1e6, p / m, rss / 1024
		}'
}

# paired TAG: the median over runs of TAG's time divided by tcpdump's time
# in the same round (the two ran back to back, under the same load).
paired() {
	paste -d' ' "$work/$1" "$work/td" | awk '{ t = $4 > 0 ? $4 : 0.001; printf "%.3f\n", $1 / t }' |
		sort -n | awk '{ r[NR] = $1 } END { printf "%.2f", r[int((NR + 1) / 2)] }'
}

for file; do
	bytes=$(stat -c %s "$file")
	if command -v capinfos >/dev/null; then
		packets=$(capinfos -M -c -T -r "$file" | awk -F'\t' '{print $2}')
	else
		packets=$(tcpdump -nr "$file" -q 2>/dev/null | wc -l)
	fi
	cat "$file" >/dev/null # warm cache
	rm -f "$work/td" "$work/s1" "$work/sn"
	i=0
	while [ "$i" -lt "$runs" ]; do
		run td tcpdump -r "$file" -w /dev/null
		run s1 "$work/tschsensor" replay --quiet "$file"
		[ -z "$multi" ] || run sn "$work/tschsensor" replay --quiet --workers "$workers" "$file"
		i=$((i + 1))
	done
	echo
	echo "file: $file, $bytes bytes, $packets packets"
	printf '%-46s %8s %6s %7s %7s %9s %11s %9s\n' command "median s" ratio paired "cpu s" "MB/s" "packets/s" "peak RSS"
	base=0
	report td "tcpdump -r FILE -w /dev/null"
	base=$(sort -n "$work/td" | awk '{ t[NR] = $1 } END { m = t[int((NR + 1) / 2)]; print (m > 0 ? m : 0.001) }')
	report s1 "tschsensor replay --quiet FILE"
	[ -z "$multi" ] || report sn "tschsensor replay --quiet --workers $workers FILE"
done
