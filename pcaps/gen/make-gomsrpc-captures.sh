#!/usr/bin/env bash
# make-gomsrpc-captures.sh: captures of a second, independent MS-TSCH client,
# go-msrpc's own ITaskSchedulerService client (pcaps/gen/gomsrpc, our driver),
# against our lab server pcaps/gen/tsch_lab.py. Facts by pcaps/gen/facts.py.
# Run as root: bash pcaps/gen/make-gomsrpc-captures.sh [name...]
#
# Same pattern as make-captures.sh, in namespaces of its own so both can run:
# tschgo-cli (10.79.0.1, veth tg-cli) and tschgo-srv (10.79.0.2, veth tg-srv),
# offloads off, tcpdump -s 0 on the server veth, classic pcap, TCP only.
# OUT=dir writes the captures elsewhere (default: pcaps/).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$(cd "$HERE/.." && pwd)}
PY=/usr/bin/python3
NS_C=tschgo-cli NS_S=tschgo-srv
IF_C=tg-cli IF_S=tg-srv
IP_C=10.79.0.1 IP_S=10.79.0.2
USER_=alice DOMAIN=LAB PASSWORD='Tsch-Lab-2026!'
TCP_PORT=49667
WORK=$(mktemp -d /tmp/tschgo.XXXXXX)
LAB_PID= DUMP_PID=

install_deps() {
	apt_ensure python3-impacket tcpdump iproute2 tshark ethtool
	command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
}

# shellcheck source=labnet.sh
. "$HERE/labnet.sh"
need_root
cleanup() { labnet_cleanup "$LAB_PID"; }
trap cleanup EXIT

capture() { # capture NAME EXTRA_JSON CLIENT-FLAGS...
	local name=$1 extra=$2; shift 2
	local pcap="$OUT/$name.pcap"
	echo "== $name"
	lab_start
	dump_start "$pcap"
	ip netns exec "$NS_C" timeout 60 "$WORK/gomsrpc" -target "$IP_S" -user "$USER_" -domain "$DOMAIN" \
		-password "$PASSWORD" "$@" >"$WORK/client.json" 2>"$WORK/client.err" || {
		echo "client failed:" >&2; cat "$WORK/client.err" >&2; tail -30 "$WORK/lab.log" >&2; exit 1; }
	sleep 1 # let the last FIN/ACKs reach the capture
	stop_pid "$DUMP_PID" INT; DUMP_PID=
	stop_pid "$LAB_PID"; LAB_PID=
	# facts.py describes the 10.77 lab by default: the extra JSON overrides it.
	extra=$("$PY" -c 'import json,sys; e=json.loads(sys.argv[1]); e.update(client_ip=sys.argv[2], server_ip=sys.argv[3],
generator="pcaps/gen/make-gomsrpc-captures.sh (client pcaps/gen/gomsrpc, go-msrpc v1.5.2; lab server pcaps/gen/tsch_lab.py)"); print(json.dumps(e))' \
		"$extra" "$IP_C" "$IP_S")
	"$PY" "$HERE/facts.py" --name "$name" --pcap "$pcap" --events "$WORK/events.jsonl" \
		--client-json "$WORK/client.json" --out "$OUT/$name.json" --password "$PASSWORD" \
		--tcp-port "$TCP_PORT" --extra "$extra"
	local size; size=$(stat -c %s "$pcap")
	[ "$size" -lt 102400 ] || { echo "$name.pcap is $size bytes (limit 100 KB)" >&2; exit 1; }
	echo "   $size bytes, facts in $OUT/$name.json"
}

want() { [ ${#SELECTED[@]} -eq 0 ] && return 0; local w; for w in "${SELECTED[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

main() {
	SELECTED=("$@")
	install_deps
	(cd "$REPO" && go build -o "$WORK/gomsrpc" ./pcaps/gen/gomsrpc)
	net_up
	if want gomsrpc-schtask-tcp-sealed; then
		capture gomsrpc-schtask-tcp-sealed '{"rpc_auth": "NTLMSSP (auth type 10), auth_level 6 (packet privacy): stubs sealed"}' \
			-mode tcp -level privacy
	fi
	if want gomsrpc-schtask-np-sealed; then
		capture gomsrpc-schtask-np-sealed '{"rpc_auth": "NTLMSSP (auth type 10), auth_level 6 (packet privacy): stubs sealed"}' \
			-mode np -level privacy
	fi
	if want gomsrpc-schtask-tcp-ndr64-sealed; then
		capture gomsrpc-schtask-tcp-ndr64-sealed '{"rpc_auth": "NTLMSSP (auth type 10), auth_level 6 (packet privacy): stubs sealed, NDR64"}' \
			-mode tcp -level privacy -ndr64
	fi
	if want gomsrpc-schtask-tcp-connect; then
		capture gomsrpc-schtask-tcp-connect '{"rpc_auth": "NTLMSSP (auth type 10), auth_level 2 (connect): stubs in the clear"}' \
			-mode tcp -level connect
	fi
	if want gosmb2-legacy-job; then
		capture gosmb2-legacy-job '{"rpc_auth": "NTLMSSP (auth type 10), auth_level 2 (connect)", "job_writer": "github.com/hirochachacha/go-smb2 v1.1.0, SMB 2.0.2, NTLM"}' \
			-mode legacy-job
	fi
}

main "$@"
