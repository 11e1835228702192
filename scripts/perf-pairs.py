#!/usr/bin/env python3
"""perf-pairs.py — paired replay timings with microsecond CPU times.

scripts/perf.sh reads /usr/bin/time, which rounds to 10 ms: too coarse for
0.1-0.2 s runs. This runs tcpdump -r FILE -w /dev/null and each sensor binary
given, interleaved round by round (so load from other jobs hits them alike),
reads each child's rusage from wait4, and prints per binary the median wall
time, the paired ratio (median over rounds of its time over tcpdump's in the
same round), the median CPU seconds (user + system) and their ratio to
tcpdump's, and the peak RSS (which cannot be below this script's own at
fork, about 14 MB: perf.sh's /usr/bin/time gives tcpdump's true 6 MB).

usage: scripts/perf-pairs.py [-n ROUNDS] -f FILE [-f FILE...] BINARY...
e.g.   scripts/perf-pairs.py -n 21 -f /tmp/mirror-mix.pcap -f /tmp/smb-large.pcap /tmp/tschsensor-main /tmp/tschsensor
"""
import argparse
import os
import statistics as st
import subprocess
import time


def run(cmd):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit("%s: exit status %d" % (" ".join(cmd), status))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=21, help="rounds")
    ap.add_argument("-f", action="append", required=True, help="capture file")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    print("load", open("/proc/loadavg").read().split()[:3])
    for f in a.f:
        # Warm the page cache in another process: the children's peak RSS
        # starts from this process's at fork.
        subprocess.run(["cat", f], stdout=subprocess.DEVNULL, check=True)
        cmds = {"tcpdump": ["tcpdump", "-r", f, "-w", "/dev/null"]}
        for b in a.binaries:
            cmds[b] = [b, "replay", "--quiet", f]
        res = {k: [] for k in cmds}
        for _ in range(a.n):
            for k, c in cmds.items():
                res[k].append(run(c))
        td = res["tcpdump"]
        bw, bc = st.median(x[0] for x in td), st.median(x[1] for x in td)
        for k, r in res.items():
            w, c = st.median(x[0] for x in r), st.median(x[1] for x in r)
            pr = st.median(x[0] / y[0] for x, y in zip(r, td))
            print("%s %s: wall %.3f s (paired %.2f), cpu %.3f s (%.2f), peak RSS %.0f MB"
                  % (os.path.basename(f), k, w, pr, c, c / bc, max(x[2] for x in r)))
    print("load", open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
