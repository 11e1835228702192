#!/bin/sh
# perf.sh — time tschsensor replay against tcpdump on the same capture.
#
# Builds the sensor, warms the page cache, then runs each command RUNS times
# (default 3) and reports the median wall time as MB/s (capture file bytes)
# and packets/s, with the peak resident set size from /usr/bin/time -v.
# tcpdump -r FILE -w /dev/null reads and writes every record and decodes
# nothing: the floor any pcap consumer pays.
#
# usage: scripts/perf.sh FILE [RUNS]
#        (make a large FILE with scripts/make-smb-capture.sh)
set -eu

file=${1:?usage: scripts/perf.sh FILE [RUNS]}
runs=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tschperf.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

[ -x /usr/bin/time ] || { echo "perf.sh: /usr/bin/time missing (apt-get install -y time)" >&2; exit 1; }
command -v tcpdump >/dev/null || { echo "perf.sh: tcpdump missing" >&2; exit 1; }

(cd "$root" && go build -o "$work/tschsensor" ./cmd/tschsensor)
bytes=$(stat -c %s "$file")
if command -v capinfos >/dev/null; then
	packets=$(capinfos -M -c -T -r "$file" | awk -F'\t' '{print $2}')
else
	packets=$(tcpdump -nr "$file" -q 2>/dev/null | wc -l)
fi
cat "$file" >/dev/null # warm cache

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM"
echo "go: $(go version | awk '{print $3}'), tcpdump: $(tcpdump --version 2>&1 | head -1 | awk '{print $3}')"
echo "file: $file, $bytes bytes, $packets packets"
printf '%-44s %9s %10s %12s %10s\n' command "median s" "MB/s" "packets/s" "peak RSS"

# measure NAME CMD...: run RUNS times, print the median line.
measure() {
	name=$1
	shift
	: >"$work/times"
	i=0
	while [ "$i" -lt "$runs" ]; do
		/usr/bin/time -v -o "$work/time.out" "$@" >/dev/null 2>"$work/stderr" ||
			{ echo "perf.sh: $name failed:" >&2; cat "$work/stderr" "$work/time.out" >&2; exit 1; }
		awk -F': ' '
			/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (j = 1; j <= n; j++) s = s * 60 + p[j] }
			/Maximum resident set size/ { rss = $2 }
			END { printf "%.3f %d\n", s, rss }' "$work/time.out" >>"$work/times"
		i=$((i + 1))
	done
	sort -n "$work/times" | awk -v name="$name" -v b="$bytes" -v p="$packets" -v runs="$runs" '
		{ t[NR] = $1; r[NR] = $2 }
		END {
			m = t[int((runs + 1) / 2)]; rss = r[int((runs + 1) / 2)]
			if (m <= 0) m = 0.001
			printf "%-44s %9.3f %10.1f %12.0f %7.0f MB\n", name, m, b / m / 1e6, p / m, rss / 1024
		}'
}

measure "tcpdump -r FILE -w /dev/null" tcpdump -r "$file" -w /dev/null
measure "tschsensor replay --quiet FILE" "$work/tschsensor" replay --quiet "$file"
measure "tschsensor replay --quiet --no-stdout FILE" "$work/tschsensor" replay --quiet --no-stdout "$file"
