#!/usr/bin/env bash
# make-captures.sh: regenerates the project's own captures pcaps/*.pcap and
# their facts pcaps/*.json with real clients (Debian's impacket) against our
# lab server (pcaps/gen/tsch_lab.py). Run as root: bash pcaps/gen/make-captures.sh
#
# All traffic stays between two network namespaces joined by a veth pair
# (10.77.0.1 client, 10.77.0.2 server) that this script creates and removes.
# tcpdump runs in the server namespace on the veth, full snaplen, classic pcap.
# Idempotent: every run removes what a previous run left and rewrites the same
# file names. Optional arguments name the captures to make (default: all).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$(cd "$HERE/.." && pwd)} # OUT=dir writes elsewhere
PY=/usr/bin/python3            # Debian's python: Debian's impacket lives there
NS_C=tschlab-cli NS_S=tschlab-srv
IF_C=tl-cli IF_S=tl-srv
IP_C=10.77.0.1 IP_S=10.77.0.2
USER_=alice DOMAIN=LAB PASSWORD='Tsch-Lab-2026!'
TCP_PORT=49667
WORK=$(mktemp -d /tmp/tschlab.XXXXXX)
LAB_PID= DUMP_PID=

install_deps() {
	apt_ensure python3-impacket tcpdump iproute2 tshark ethtool
	[ -f /usr/share/doc/python3-impacket/examples/atexec.py ] || { echo "atexec.py missing from python3-impacket" >&2; exit 1; }
}

# shellcheck source=labnet.sh
. "$HERE/labnet.sh"
need_root
cleanup() { labnet_cleanup "$LAB_PID"; }
trap cleanup EXIT

capture() { # capture NAME EXTRA_JSON CLIENT-ARGS...
	local name=$1 extra=$2; shift 2
	local pcap="$OUT/$name.pcap"
	echo "== $name"
	lab_start
	dump_start "$pcap"
	ip netns exec "$NS_C" timeout 120 "$@" >"$WORK/client.out" 2>"$WORK/client.err" || {
		echo "client failed:" >&2; cat "$WORK/client.err" "$WORK/client.out" >&2; exit 1; }
	sleep 1 # let the last FIN/ACKs reach the capture
	stop_pid "$DUMP_PID" INT; DUMP_PID=
	stop_pid "$LAB_PID"; LAB_PID=
	if [ "${CLIENT_IS_JSON:-1}" = 1 ]; then
		cp "$WORK/client.out" "$WORK/client.json"
	fi
	"$PY" "$HERE/facts.py" --name "$name" --pcap "$pcap" --events "$WORK/events.jsonl" \
		--client-json "$WORK/client.json" --out "$OUT/$name.json" --password "$PASSWORD" \
		--tcp-port "$TCP_PORT" --extra "$extra"
	echo "   $(stat -c %s "$pcap") bytes, facts in pcaps/$name.json"
}

client_capture() { # client_capture NAME SCENARIO EXTRA_JSON: one tsch_client.py scenario
	capture "$1" "$3" "$PY" "$HERE/tsch_client.py" "$2" --target "$IP_S" --user "$USER_" --domain "$DOMAIN" \
		--password "$PASSWORD"
}

atexec_sealed() {
	local name=impacket-atexec-smb2
	local cmdline=("$PY" /usr/share/doc/python3-impacket/examples/atexec.py "$DOMAIN/$USER_:$PASSWORD@$IP_S" whoami /all)
	# atexec prints text, not JSON: describe the run for facts.py ourselves.
	CLIENT_IS_JSON=0 capture_atexec "$name" "${cmdline[@]}"
}

capture_atexec() {
	local name=$1; shift
	"$PY" - "$WORK/client.json" "$@" <<-'EOF'
	import json, sys, hashlib
	argv = sys.argv[2:]
	src = "/usr/share/doc/python3-impacket/examples/atexec.py"
	json.dump({"tool": "impacket examples/atexec.py (Debian python3-impacket, unmodified, run as a program)",
	           "atexec_sha256": hashlib.sha256(open(src, "rb").read()).hexdigest(),
	           "argv": ["atexec.py"] + argv[2:], "auth_level": 6, "transport": "ncacn_np:\\pipe\\atsvc",
	           "interface": "ITaskSchedulerService", "user": argv[2].split("/")[1].split(":")[0],
	           "domain": argv[2].split("/")[0], "operator_command": " ".join(argv[3:]),
	           "op_sequence": ["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"]},
	          open(sys.argv[1], "w"))
	EOF
	CLIENT_IS_JSON=0 capture "$name" '{"rpc_auth": "NTLMSSP, auth_level 6 (packet privacy): stubs sealed"}' "$@"
	"$PY" - "$OUT/$name.json" "$WORK/client.out" <<-'EOF'
	import json, sys
	f = json.load(open(sys.argv[1]))
	f["client"]["client_printed_output"] = open(sys.argv[2]).read()
	json.dump(f, open(sys.argv[1], "w"), indent=2, sort_keys=True)
	open(sys.argv[1], "a").write("\n")
	EOF
}

note_transact_frames() { # note_transact_frames NAME: records which frames carry RPC in SMB1 TransactNmPipe
	"$PY" - "$OUT/$1.pcap" "$OUT/$1.json" <<-'EOF'
	import json, subprocess, sys
	pcap, out = sys.argv[1], sys.argv[2]
	rows = subprocess.run(["tshark", "-n", "-r", pcap, "-Y", "smb.cmd == 0x25", "-T", "fields", "-e", "frame.number",
	                       "-e", "smb.flags.response", "-e", "smb_pipe.function", "-e", "dcerpc.pkt_type"],
	                      check=True, capture_output=True, text=True).stdout.split("\n")
	tx = [{"frame": int(c[0]), "response": c[1] == "1", "pipe_function": c[2], "dcerpc_pkt_type": int(c[3])}
	      for c in (r.split("\t") for r in rows if r.strip())]
	f = json.load(open(out))
	f["transact_nmpipe_frames"] = tx
	pdus = sorted(d["frame"] for d in f["dcerpc_pdus"])
	if sorted(t["frame"] for t in tx if t["pipe_function"] == "0x0026") != pdus:
	    sys.exit("not every DCE-RPC PDU rides in a TransactNmPipe: %s vs %s" % (tx, pdus))
	json.dump(f, open(out, "w"), indent=2, sort_keys=True)
	open(out, "a").write("\n")
	EOF
}

want() { [ ${#SELECTED[@]} -eq 0 ] && return 0; local w; for w in "${SELECTED[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

main() {
	SELECTED=("$@")
	install_deps
	"$PY" -c 'import impacket, sys; from impacket import version; print("impacket", version.version, file=sys.stderr)'
	net_up
	if want impacket-atexec-smb2 ; then atexec_sealed; fi
	if want impacket-atexec-smb2-clear ; then
		client_capture impacket-atexec-smb2-clear atexec-clear '{"rpc_auth": "NTLMSSP, auth_level 2 (connect): stubs in the clear"}'
	fi
	if want impacket-schtask-creds-smb2 ; then
		client_capture impacket-schtask-creds-smb2 tsch-smb2-clear '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)"}'
	fi
	if want impacket-schtask-tcp ; then
		client_capture impacket-schtask-tcp tcp '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)"}'
	fi
	if want impacket-schtask-tcp-ndr64 ; then
		client_capture impacket-schtask-tcp-ndr64 tcp-ndr64 '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)"}'
	fi
	if want impacket-at-smb1 ; then
		client_capture impacket-at-smb1 at-smb1 '{"rpc_auth": "none (auth_level 1): no sec_trailer"}'
	fi
	if want impacket-at-smb2 ; then
		client_capture impacket-at-smb2 at-smb2 '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)"}'
	fi
	if want impacket-sasec-smb2 ; then
		client_capture impacket-sasec-smb2 sasec-smb2 '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)"}'
	fi
	if want impacket-nbss139 ; then
		client_capture impacket-nbss139 nbss139 '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)"}'
	fi
	if want impacket-atexec-smb1 ; then
		client_capture impacket-atexec-smb1 atexec-smb1 '{"rpc_auth": "NTLMSSP, auth_level 6 (packet privacy): stubs sealed", "smb_rpc_commands": "Write AndX / Read AndX"}'
	fi
	if want impacket-atexec-smb1-clear ; then
		client_capture impacket-atexec-smb1-clear atexec-smb1-clear '{"rpc_auth": "NTLMSSP, auth_level 2 (connect): stubs in the clear", "smb_rpc_commands": "Write AndX / Read AndX"}'
	fi
	if want impacket-at-smb1-trans ; then
		client_capture impacket-at-smb1-trans at-smb1-trans '{"rpc_auth": "none (auth_level 1): no sec_trailer", "smb_rpc_commands": "SMB_COM_TRANSACTION TransactNmPipe"}'
		note_transact_frames impacket-at-smb1-trans
	fi
	if want impacket-schtask-tcp-interleaved-sealed ; then
		client_capture impacket-schtask-tcp-interleaved-sealed tcp-interleaved '{"rpc_auth": "NTLMSSP, auth_level 6 (packet privacy): stubs sealed; srvsvc NetrServerGetInfo calls on a second context of the same association (alter_context without auth) between the Task Scheduler calls"}'
	fi
	if want impacket-schtask-tcp-fault-sealed ; then
		LAB_FLAGS=--seal-faults client_capture impacket-schtask-tcp-fault-sealed tcp-fault '{"rpc_auth": "NTLMSSP, auth_level 6 (packet privacy): stubs sealed; a call to an opnum the interface lacks between SchRpcRegisterTask and SchRpcRun, answered nca_s_op_rng_error in a sealed fault (tsch_lab.py --seal-faults)"}'
	fi
	if want impacket-schtask-tcp-signed ; then
		client_capture impacket-schtask-tcp-signed tcp-integrity '{"rpc_auth": "NTLMSSP, auth_level 5 (packet integrity): stubs in the clear, every request and response signed"}'
	fi
	if want impacket-hijack-smb2 ; then
		client_capture impacket-hijack-smb2 hijack '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)"}'
	fi
	if want impacket-log-evasion-smb2 ; then
		client_capture impacket-log-evasion-smb2 log-evasion '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)"}'
	fi
	if want impacket-legacy-job-smb1 ; then
		client_capture impacket-legacy-job-smb1 legacy-job-smb1 '{"rpc_auth": "NTLMSSP, auth_level 2 (connect)", "smb_file_commands": "NT_CREATE_ANDX, WRITE_ANDX, CLOSE on ADMIN$ (SMB1, NT LM 0.12)"}'
	fi
	du -ch "$OUT"/*.pcap | tail -1
}

main "$@"
