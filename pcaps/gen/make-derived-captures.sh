#!/usr/bin/env bash
# make-derived-captures.sh: derives the mid-stream captures pcaps/midstream-*.pcap
# (and their facts pcaps/midstream-*.json) from the project's own captures,
# reproducibly: the same inputs always give the same bytes.
#
#   bash pcaps/gen/make-derived-captures.sh
#
# Cut points are found by content with tshark (never hard-coded frame
# numbers), so a regeneration of the source captures moves them along.
# editcap removes frames; pcaps/gen/reorder (Go, ours) reorders and
# duplicates TCP segments. Needs editcap and tshark (Debian tshark /
# wireshark-common), installed when missing, and Go for the reorder tool.
# No network, no root; nothing is written outside pcaps/ and a mktemp dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(cd "$HERE/.." && pwd)
ROOT=$(cd "$OUT/.." && pwd)
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/tschderive.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if ! command -v editcap >/dev/null || ! command -v tshark >/dev/null; then
	[ "$(id -u)" = 0 ] || { echo "make-derived-captures.sh: needs editcap and tshark (apt-get install tshark)" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null
fi

# frames PCAP FILTER FIELD: the values of FIELD in frames matching FILTER.
frames() { tshark -r "$1" -Y "$2" -T fields -e "$3" 2>/dev/null; }
first() { frames "$@" | head -1; }

# facts NAME SOURCE DELETED-RANGES HOW EXPECT-JSON: writes pcaps/NAME.json.
# EXPECT-JSON says what the sensor must report; "calls_from_source" makes the
# expected calls those of the source's facts file (op, opnum, path, command).
facts() {
	"$PY" - "$OUT/$1.json" "$OUT/$2.pcap" "$OUT/$1.pcap" "$OUT/$2.json" "$3" "$4" "$5" "$(editcap --version | head -1)" <<-'EOF'
	import hashlib, json, os, sys
	out, src, pcap, srcfacts, deleted, how, expect, tool = sys.argv[1:9]
	sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
	sf = json.load(open(srcfacts))
	exp = json.loads(expect)
	calls = []
	for c in sf.get("calls") or sf["source_calls"]:
	    if c["interface"] == "EPM":
	        continue  # ept_map teaches the sensor a port; it is not an event
	    e = {"op": c["op"], "opnum": c["opnum"], "interface": c["interface"]}
	    for k in ("path", "command", "arguments"):
	        if c.get(k):
	            e[k] = c[k]
	    calls.append(e)
	if exp.pop("expect_from_source", False):
	    exp = dict(sf["expect"], note=exp["note"])
	if exp.pop("calls_from_source", False):
	    exp["calls"] = calls
	f = {
	    "name": os.path.basename(pcap)[:-5],
	    "derived_from": os.path.basename(src),
	    "source_sha256": sha(src),
	    "pcap_sha256": sha(pcap),
	    "pcap_bytes": os.path.getsize(pcap),
	    "generator": "pcaps/gen/make-derived-captures.sh",
	    "tool": tool,
	    "source_frames_deleted": deleted,
	    "how": how,
	    "source_calls": calls,
	    "expect": exp,
	}
	json.dump(f, open(out, "w"), indent=2, sort_keys=True)
	open(out, "a").write("\n")
	EOF
	echo "   $1: $(stat -c %s "$OUT/$1.pcap") bytes, facts in pcaps/$1.json"
}

# (1) atexec over \pipe\atsvc, capture starting right after the SMB2 CREATE
# response of the pipe: no negotiate, session setup, tree connect or CREATE.
midstream_after_create() {
	local name=midstream-atexec-after-create src=impacket-atexec-smb2-clear
	local in="$OUT/$src.pcap" fid create
	fid=$(first "$in" 'dcerpc.pkt_type == 11' smb2.fid)
	create=$(first "$in" "smb2.cmd == 5 && smb2.flags.response == 1 && smb2.fid == $fid" frame.number)
	[ -n "$create" ] || { echo "$src: no CREATE response for the bind's file id" >&2; exit 1; }
	editcap -F pcap "$in" "$OUT/$name.pcap" "1-$create"
	facts "$name" "$src" "1-$create" \
		"editcap deletes frames 1-$create: the TCP handshake, NEGOTIATE, SESSION_SETUP, TREE_CONNECT IPC\$ and the CREATE of atsvc (request and response). The capture starts with the SMB2 WRITE carrying the bind." \
		'{"calls_from_source": true, "pipe": "atsvc", "pipe_learned_from": "bind_ack secondary address \\PIPE\\atsvc",
		  "interface": "ITaskSchedulerService", "transport": "ncacn_np", "outcome": "success", "responded": true,
		  "alerts": ["remote_task_registered", "atexec"],
		  "note": "the same calls, paths, command and outcomes as the full capture; smb.tree is unknown (no TREE_CONNECT), user comes from the RPC bind NTLMSSP"}'
}

# (2) the same capture with the bind and bind_ack lost (frames from the
# WRITE carrying the bind to the READ response carrying the bind_ack): the
# CREATE of atsvc is seen, the interface is not.
midstream_no_bind() {
	local name=midstream-atexec-no-bind src=impacket-atexec-smb2-clear
	local in="$OUT/$src.pcap" bind ack
	bind=$(first "$in" 'dcerpc.pkt_type == 11' frame.number)
	ack=$(first "$in" 'dcerpc.pkt_type == 12' frame.number)
	[ -n "$bind" ] && [ -n "$ack" ] || { echo "$src: bind or bind_ack not found" >&2; exit 1; }
	editcap -F pcap "$in" "$OUT/$name.pcap" "$bind-$ack"
	facts "$name" "$src" "$bind-$ack" \
		"editcap deletes frames $bind-$ack: the SMB2 WRITE with the bind, its WRITE response, the READ request and the READ response with the bind_ack (a capture drop: both TCP directions have a sequence gap). The auth3 and every call stay." \
		'{"calls_from_source": true, "pipe": "atsvc", "interface": "unknown", "transport": "ncacn_np",
		  "outcome": "unknown", "responded": true,
		  "absent_alerts": ["remote_task_registered", "atexec", "remote_task_run", "remote_task_deleted"],
		  "note": "the interface is not guessed from opnums or pipe name: every call is reported with dcerpc.interface.name unknown, its opnum, no operation name and no tsch object"}'
}

# (3) schtask over ncacn_ip_tcp: the EPM exchange on tcp/135 stays, the
# dynamic-port connection starts after its auth3 (no SYN, bind, bind_ack).
midstream_tcp_epm() {
	local name=midstream-schtask-tcp-epm src=impacket-schtask-tcp
	local in="$OUT/$src.pcap" port syn auth3
	port=$(first "$in" 'dcerpc.pkt_type == 11 && tcp.dstport != 135' tcp.dstport)
	syn=$(first "$in" "tcp.dstport == $port && tcp.flags.syn == 1" frame.number)
	auth3=$(first "$in" "tcp.port == $port && dcerpc.pkt_type == 16" frame.number)
	[ -n "$syn" ] && [ -n "$auth3" ] || { echo "$src: dynamic-port handshake or auth3 not found" >&2; exit 1; }
	editcap -F pcap "$in" "$OUT/$name.pcap" "$syn-$auth3"
	facts "$name" "$src" "$syn-$auth3" \
		"editcap deletes frames $syn-$auth3 of the connection to tcp/$port: SYN, SYN-ACK, ACK, bind, bind_ack and auth3. The EPM connection on tcp/135 (ept_map answering tcp/$port) is whole; the dynamic-port connection starts with the first TCP segment of the SchRpcRegisterTask request." \
		"{\"calls_from_source\": true, \"interface\": \"ITaskSchedulerService\", \"interface_from\": \"ept_map response: 10.77.0.2:$port\",
		  \"transport\": \"ncacn_ip_tcp\", \"outcome\": \"success\", \"responded\": true, \"alerts\": [\"remote_task_registered\", \"remote_task_run\", \"remote_task_deleted\"],
		  \"note\": \"no bind: the transfer syntax is found by decoding (NDR first), dcerpc.auth is absent (no sec_trailer in level-2 requests)\"}"
}

# (4) capture (3) with its TCP payload cut into 300-byte segments, adjacent
# segments of a direction swapped and every third one sent twice.
midstream_tcp_reordered() {
	local name=midstream-schtask-tcp-reordered src=midstream-schtask-tcp-epm
	(cd "$ROOT" && go run ./pcaps/gen/reorder -segment 300 -dup 3 "$OUT/$src.pcap" "$OUT/$name.pcap")
	facts "$name" "$src" "none" \
		"pcaps/gen/reorder -segment 300 -dup 3: every TCP payload cut into segments of at most 300 bytes, each later pair of data segments of one direction swapped (the first data segment of a direction stays first), every third data segment sent twice; checksums recomputed." \
		'{"expect_from_source": true, "note": "the same events, fields and alerts as midstream-schtask-tcp-epm"}'
}

# (5), (8), (9) captures starting at the CREATE of atsvc: the negotiate,
# session setup and TREE_CONNECT of IPC$ were before it. An AT job over SMB2,
# atexec over SMB2 and over SMB1 (NT_CREATE_ANDX).
midstream_from_create() {
	local name=$1 src=$2 filter=$3 expect=$4
	local in="$OUT/$src.pcap" create
	create=$(first "$in" "$filter" frame.number)
	[ -n "$create" ] || { echo "$src: no CREATE request of atsvc" >&2; exit 1; }
	editcap -F pcap "$in" "$OUT/$name.pcap" "1-$((create - 1))"
	facts "$name" "$src" "1-$((create - 1))" \
		"editcap deletes frames 1-$((create - 1)): the TCP handshake, NEGOTIATE, SESSION_SETUP and TREE_CONNECT of IPC\$. The capture starts with the CREATE request of atsvc on a tree the sensor never saw connected." \
		"$expect"
}

# (6), (7) atexec over SMB2 and SMB1 cut right before the TREE_CONNECT of
# IPC$: the session setup was before the capture.
midstream_atexec_no_tree() {
	local name=$1 src=$2 filter=$3
	local in="$OUT/$src.pcap" tc
	tc=$(first "$in" "$filter" frame.number)
	[ -n "$tc" ] || { echo "$src: no TREE_CONNECT request" >&2; exit 1; }
	editcap -F pcap "$in" "$OUT/$name.pcap" "1-$((tc - 1))"
	facts "$name" "$src" "1-$((tc - 1))" \
		"editcap deletes frames 1-$((tc - 1)): the TCP handshake, NEGOTIATE and SESSION_SETUP. The capture starts with the TREE_CONNECT request of IPC\$." \
		'{"calls_from_source": true, "pipe": "atsvc", "interface": "ITaskSchedulerService", "transport": "ncacn_np", "outcome": "success",
		  "responded": true, "user": "alice", "alerts": ["remote_task_registered", "atexec"],
		  "note": "the same calls, paths, command, arguments and alerts as the full capture; the user comes from the RPC bind NTLMSSP (session setup not captured)"}'
}

echo "== derived captures from $(editcap --version | head -1)"
midstream_after_create
midstream_no_bind
midstream_tcp_epm
midstream_tcp_reordered
midstream_from_create midstream-at-smb2-from-create impacket-at-smb2 'smb2.cmd == 5 && smb2.flags.response == 0 && smb2.filename == "atsvc"' \
	'{"calls_from_source": true, "pipe": "atsvc", "interface": "ATSVC", "transport": "ncacn_np", "outcome": "success", "responded": true,
	  "user": "alice", "alerts": ["remote_at_job_created"],
	  "note": "the CREATE response (no timestamps, FILE_ATTRIBUTE_NORMAL) and the name atsvc make the handle a pipe; the user comes from the RPC bind NTLMSSP (session setup not captured); smb.tree is unknown"}'
midstream_from_create midstream-atexec-smb2-from-create impacket-atexec-smb2-clear 'smb2.cmd == 5 && smb2.flags.response == 0 && smb2.filename == "atsvc"' \
	'{"calls_from_source": true, "pipe": "atsvc", "interface": "ITaskSchedulerService", "transport": "ncacn_np", "outcome": "success", "responded": true,
	  "user": "alice", "alerts": ["remote_task_registered", "atexec"],
	  "note": "the same calls, paths, command, arguments and alerts as the full capture; smb.tree is unknown, the user comes from the RPC bind NTLMSSP"}'
midstream_from_create midstream-atexec-smb1-from-create impacket-atexec-smb1-clear 'smb.cmd == 0xa2 && smb.flags.response == 0' \
	'{"calls_from_source": true, "pipe": "atsvc", "interface": "ITaskSchedulerService", "transport": "ncacn_np", "outcome": "success", "responded": true,
	  "user": "alice", "alerts": ["remote_task_registered", "atexec"],
	  "note": "NT_CREATE_ANDX answers FileType message-mode pipe: the handle is a pipe; smb.tree is unknown, the user comes from the RPC bind NTLMSSP"}'
midstream_atexec_no_tree midstream-atexec-smb2-no-tree impacket-atexec-smb2-clear 'smb2.cmd == 3 && smb2.flags.response == 0'
midstream_atexec_no_tree midstream-atexec-smb1-no-tree impacket-atexec-smb1-clear 'smb.cmd == 0x75 && smb.flags.response == 0'
