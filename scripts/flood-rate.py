#!/usr/bin/env python3
"""flood-rate.py — each flood capture's packet rate against the sensor's own
rate on the no-SMB mirror mix, measured in the same minutes, its peak RSS, and
whether the atexec spliced into it was still reported.

Round by round it replays the mix, then each capture, with the same binary
(so load from other jobs hits them alike), reads each child's rusage from
wait4, and prints per capture: packets, median wall and CPU seconds, packets/s,
the rate against the mix's (medians over rounds of the paired ratio, by wall
and by CPU seconds), peak RSS, and from the last round's output the
registration with command cmd.exe and outcome success, and the atexec alert.

usage: scripts/flood-rate.py [-n ROUNDS] [-m MIX] BINARY CAPTURE...
e.g.   scripts/flood-rate.py -n 3 /tmp/tschsensor /tmp/floods/*.pcap
"""
import argparse
import os
import re
import statistics as st
import subprocess
import tempfile
import time


def run(binary, pcap, out, err):
    t = time.perf_counter()
    p = subprocess.Popen([binary, "replay", pcap], stdout=out, stderr=err)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit("%s replay %s: exit status %d" % (binary, pcap, status))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def packets(errfile):
    with open(errfile) as f:
        m = re.search(r"^tschsensor: (\d+) packets", f.read(), re.M)
    return int(m.group(1)) if m else 0


def atexec(outfile):
    reg = alert = 0
    with open(outfile) as f:
        for line in f:
            if '"kind":"event"' in line and '"action":"SchRpcRegisterTask"' in line and \
                    '"command":"cmd.exe"' in line and '"outcome":"success"' in line:
                reg += 1
            if '"rule":{"id":"atexec"' in line:
                alert += 1
    return reg, alert


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3, help="rounds")
    ap.add_argument("-m", default="/tmp/mirror-mix.pcap", help="the mirror mix")
    ap.add_argument("binary")
    ap.add_argument("captures", nargs="+")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="floodrate.")
    out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
    print("load", " ".join(open("/proc/loadavg").read().split()[:3]))
    mix = []
    runs = {c: [] for c in a.captures}
    for _ in range(a.n):
        for c in a.captures:
            with open(os.devnull, "w") as o, open(err, "w") as e:
                m = run(a.binary, a.m, o, e)
            mixpk = packets(err)
            mix.append(m)
            with open(out, "w") as o, open(err, "w") as e:
                r = run(a.binary, c, o, e)
            runs[c].append((r, m, packets(err), atexec(out)))
    mixwall = st.median(m[0] for m in mix)
    mixcpu = st.median(m[1] for m in mix)
    print("mix: %d packets, wall %.3f s, CPU %.3f s, %.2f M packets/s, peak %.0f MB" %
          (mixpk, mixwall, mixcpu, mixpk / mixwall / 1e6, max(m[2] for m in mix)))
    print("%-22s %9s %7s %7s %10s %7s %7s %8s  %s" %
          ("capture", "packets", "wall s", "CPU s", "packets/s", "% wall", "% CPU", "peak RSS", "registration / alert"))
    for c in a.captures:
        rs = runs[c]
        pk = rs[-1][2]
        wall = st.median(r[0][0] for r in rs)
        cpu = st.median(r[0][1] for r in rs)
        # Paired: the capture's rate over the mix's in the same round.
        pw = st.median((pk / r[0][0]) / (mixpk / r[1][0]) * 100 for r in rs)
        pc = st.median((pk / r[0][1]) / (mixpk / r[1][1]) * 100 for r in rs)
        rss = max(r[0][2] for r in rs)
        reg, alert = rs[-1][3]
        print("%-22s %9d %7.3f %7.3f %10.0f %6.1f%% %6.1f%% %5.0f MB  %d / %d" %
              (os.path.basename(c).removesuffix(".pcap"), pk, wall, cpu, pk / wall, pw, pc, rss, reg, alert))


if __name__ == "__main__":
    main()
