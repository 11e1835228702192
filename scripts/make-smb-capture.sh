#!/bin/sh
# make-smb-capture.sh — make a large, reproducible SMB capture for benchmarks.
#
# A Debian samba server runs in a network namespace behind a veth pair with a
# 1500-byte MTU and offloads off, so the capture holds wire-sized frames like
# a SPAN port's. smbclient copies seeded pseudo-random files up and back down
# with SMB2 (2.1), SMB3 (3.1.1, signed, not encrypted) and SMB1 (NT1), while
# tcpdump -s 0 records the veth (a 256 MB kernel buffer, so that it drops
# nothing). Same seed, same file contents; TCP timing and SMB ids vary from
# run to run, the traffic mix does not.
#
# Needs root (netns, smbd), and: apt-get install -y samba smbclient tcpdump iproute2 ethtool
#
# usage: scripts/make-smb-capture.sh [OUTPUT.pcap] [MB_PER_FILE] [FILES_PER_DIALECT]
#        defaults: /tmp/smb-large.pcap 40 3  (about 3 x 3 x 40 MB up and down: ~720 MB of SMB)
set -eu

out=${1:-/tmp/smb-large.pcap}
mb=${2:-40}
nfiles=${3:-3}
seed=tschsensor-smb-large
ns=tschsmb
work=$(mktemp -d /tmp/tschsmb.XXXXXX)
user=tschbench
pass=Bench-Passw0rd

cleanup() {
	[ -n "${dump_pid:-}" ] && kill "$dump_pid" 2>/dev/null && wait "$dump_pid" 2>/dev/null || true
	[ -n "${smbd_pid:-}" ] && kill "$smbd_pid" 2>/dev/null || true
	ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip link del tschsmb0 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

for tool in smbd smbclient tcpdump ip ethtool python3; do
	command -v "$tool" >/dev/null || { echo "make-smb-capture: $tool not installed" >&2; exit 1; }
done

# Network: 10.98.0.1 (client, root namespace) <-> 10.98.0.2 (server, $ns).
ip netns add "$ns"
ip link add tschsmb0 type veth peer name tschsmb1 netns "$ns"
ip addr add 10.98.0.1/24 dev tschsmb0
ip link set tschsmb0 mtu 1500 up
ip -n "$ns" addr add 10.98.0.2/24 dev tschsmb1
ip -n "$ns" link set tschsmb1 mtu 1500 up
ip -n "$ns" link set lo up
# Segmentation offloads would hand tcpdump 64 KiB frames no wire carries.
ethtool -K tschsmb0 tso off gso off gro off >/dev/null 2>&1 || true
ip netns exec "$ns" ethtool -K tschsmb1 tso off gso off gro off >/dev/null 2>&1 || true

# Samba: a private configuration and state directory; one share, one user.
mkdir -p "$work/share" "$work/state" "$work/files" "$work/back"
chmod 755 "$work" # the share lies below it; smbd serves as $user
id "$user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$user"
chown "$user" "$work/share"
cat >"$work/smb.conf" <<EOF
[global]
	server role = standalone server
	interfaces = 10.98.0.2/24
	bind interfaces only = yes
	smb ports = 445
	server min protocol = NT1
	server max protocol = SMB3_11
	ntlm auth = ntlmv2-only
	server signing = auto
	smb encrypt = off
	disable netbios = yes
	load printers = no
	printcap name = /dev/null
	log level = 0
	passdb backend = tdbsam:$work/state/passdb.tdb
	lock directory = $work/state
	state directory = $work/state
	cache directory = $work/state
	private dir = $work/state
	pid directory = $work/state
	ncalrpc dir = $work/state/ncalrpc
	log file = $work/state/log.%m
[bench]
	path = $work/share
	read only = no
	guest ok = no
EOF
printf '%s\n%s\n' "$pass" "$pass" | smbpasswd -c "$work/smb.conf" -s -a "$user" >/dev/null
ip netns exec "$ns" smbd -F --no-process-group -s "$work/smb.conf" </dev/null >"$work/smbd.out" 2>&1 &
smbd_pid=$!
for i in $(seq 50); do
	python3 -c "import socket; socket.create_connection(('10.98.0.2', 445), 1)" 2>/dev/null && break
	sleep 0.2
done

# Seeded pseudo-random files: the same bytes on every run.
python3 - "$work/files" "$mb" "$nfiles" "$seed" <<'EOF'
import random, sys, os
d, mb, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for proto in ("smb2", "smb3", "smb1"):
    for i in range(n):
        rng = random.Random(f"{seed}/{proto}/{i}")
        with open(os.path.join(d, f"{proto}-{i}.bin"), "wb") as f:
            for _ in range(mb):
                f.write(rng.randbytes(1 << 20))
EOF

tcpdump -i tschsmb0 -s 0 -B 262144 -w "$out" "tcp port 445" 2>"$work/tcpdump.err" &
dump_pid=$!
sleep 1

copy() { # proto  min  max
	cmds=""
	for i in $(seq 0 $((nfiles - 1))); do
		cmds="$cmds put $work/files/$1-$i.bin $1-$i.bin; get $1-$i.bin $work/back/$1-$i.bin;"
	done
	cmds="$cmds ls; del $1-*.bin"
	smbclient "//10.98.0.2/bench" -U "$user%$pass" --option="client min protocol=$2" \
		--option="client max protocol=$3" --option="client smb encrypt=off" -c "$cmds" >"$work/$1.log" 2>&1 ||
		{ echo "make-smb-capture: smbclient $1 failed:" >&2; cat "$work/$1.log" >&2; return 1; }
	for i in $(seq 0 $((nfiles - 1))); do
		cmp -s "$work/files/$1-$i.bin" "$work/back/$1-$i.bin" || { echo "make-smb-capture: $1-$i.bin came back different" >&2; return 1; }
	done
	echo "make-smb-capture: $1 ($3): $nfiles x $mb MB up and down"
}
copy smb2 SMB2_02 SMB2_10
copy smb3 SMB3 SMB3_11
copy smb1 NT1 NT1 || echo "make-smb-capture: SMB1 refused (samba or smbclient built without NT1); capture has SMB2/3 only" >&2

sleep 1
kill "$dump_pid"
wait "$dump_pid" 2>/dev/null || true
dump_pid=
cat "$work/tcpdump.err" | grep -E "packets (captured|dropped)" >&2 || true
ls -l "$out"
