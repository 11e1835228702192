# labnet.sh: the network lab the capture generators share. Sourced, not run.
#
# The sourcing script sets NS_C/NS_S (namespace names), IF_C/IF_S (veth ends),
# IP_C/IP_S (addresses) and WORK (its temporary directory), and DUMP_PID.
# lab_start also reads HERE, PY, TCP_PORT, USER_, DOMAIN and PASSWORD, and LAB_FLAGS (extra
# tsch_lab.py flags, e.g. --seal-faults).
# All traffic stays between the two namespaces this creates and removes.

need_root() { # the namespaces and tcpdump need root
	[ "$(id -u)" = 0 ] || { echo "${0##*/}: must run as root (network namespaces, tcpdump)" >&2; exit 1; }
}

apt_ensure() { # apt_ensure PKG...: installs those of these Debian packages that are missing
	local need=() p
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
	[ ${#need[@]} -gt 0 ] || return 0
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

stop_pid() { # stop_pid PID [SIG]: ends one process the script started, waits for it
	local pid=$1 sig=${2:-TERM}
	[ -n "$pid" ] || return 0
	kill -"$sig" "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

net_down() {
	ip netns del "$NS_C" 2>/dev/null || true
	ip netns del "$NS_S" 2>/dev/null || true
}

# labnet_cleanup SERVER_PID: stops the capture and the server, removes the
# namespaces and the work directory. Scripts call it from their EXIT trap.
labnet_cleanup() {
	stop_pid "$DUMP_PID" INT
	stop_pid "$1"
	net_down
	rm -rf "$WORK"
}

net_up() {
	net_down
	ip netns add "$NS_C"
	ip netns add "$NS_S"
	ip link add "$IF_C" type veth peer name "$IF_S"
	ip link set "$IF_C" netns "$NS_C"
	ip link set "$IF_S" netns "$NS_S"
	ip -n "$NS_C" addr add "$IP_C/24" dev "$IF_C"
	ip -n "$NS_S" addr add "$IP_S/24" dev "$IF_S"
	for ns in "$NS_C" "$NS_S"; do ip -n "$ns" link set lo up; done
	ip -n "$NS_C" link set "$IF_C" up
	ip -n "$NS_S" link set "$IF_S" up
	# Offloads off: the capture then holds real checksums and MTU-sized segments.
	ip netns exec "$NS_C" ethtool -K "$IF_C" tx off tso off gso off gro off >/dev/null 2>&1 || true
	ip netns exec "$NS_S" ethtool -K "$IF_S" tx off tso off gso off gro off >/dev/null 2>&1 || true
}

# lab_start: our MS-TSCH lab server (tsch_lab.py) in the server namespace.
lab_start() {
	rm -rf "$WORK/root" "$WORK/events.jsonl" "$WORK/ready"
	ip netns exec "$NS_S" "$PY" "$HERE/tsch_lab.py" --addr "$IP_S" --root "$WORK/root" --tcp-port "$TCP_PORT" \
		--user "$USER_" --domain "$DOMAIN" --password "$PASSWORD" --events "$WORK/events.jsonl" \
		--ready "$WORK/ready" ${LAB_FLAGS:-} >>"$WORK/lab.log" 2>&1 &
	LAB_PID=$!
	for _ in $(seq 100); do [ -e "$WORK/ready" ] && return 0; sleep 0.1; done
	echo "lab server did not start; log:" >&2; tail -20 "$WORK/lab.log" >&2; exit 1
}

dump_start() { # dump_start FILE: tcpdump on the server veth, full snaplen, TCP only
	rm -f "$1"
	ip netns exec "$NS_S" tcpdump -Z root -i "$IF_S" -s 0 -U -n -w "$1" 'tcp' 2>"$WORK/tcpdump.err" &
	DUMP_PID=$!
	for _ in $(seq 100); do grep -q "listening on" "$WORK/tcpdump.err" 2>/dev/null && return 0; sleep 0.1; done
	echo "tcpdump did not start" >&2; cat "$WORK/tcpdump.err" >&2; exit 1
}
