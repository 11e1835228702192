#!/usr/bin/env bash
# make-smb3-captures.sh: regenerates the SMB3-encrypted captures pcaps/smb3-*.pcap
# and their facts pcaps/smb3-*.json with Debian's Samba: smbd as server,
# smbclient as client, encryption required, NTLM (never Kerberos).
# Run as root: bash pcaps/gen/make-smb3-captures.sh [name...]
#
# All traffic stays between two network namespaces joined by a veth pair
# (10.78.0.1 client, 10.78.0.2 server) that this script creates and removes.
# Samba runs from a private smb.conf and state directory under a temporary
# directory; the machine's own Samba configuration, passdb and /etc/passwd are
# never touched: the account exists only in an nss_wrapper passwd file.
# tcpdump runs in the server namespace on the veth, full snaplen, classic pcap.
# Idempotent: every run removes what a previous run left and rewrites the same
# file names. Optional arguments name the captures to make (default: all).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$(cd "$HERE/.." && pwd)} # OUT=dir writes elsewhere
NS_C=tschsmb3-cli NS_S=tschsmb3-srv
IF_C=ts3-cli IF_S=ts3-srv
IP_C=10.78.0.1 IP_S=10.78.0.2
USER_=bob DOMAIN=LAB PASSWORD='Tsch-Smb3-2026!'
SERVER_NAME=TSCHSMB3-SRV
SHARE='ADMIN$'
NSS_LIB=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so
WORK=$(mktemp -d /tmp/tschsmb3.XXXXXX)
SMBD_PID= DUMP_PID=

# name | smbclient max protocol | the one cipher both sides allow ("none":
# the same session signed, not encrypted: the clear reference the sensor's
# decrypted output is compared with)
CAPTURES=(
	"smb3-300-aes128ccm|SMB3_00|AES-128-CCM"
	"smb3-311-aes128gcm|SMB3_11|AES-128-GCM"
	"smb3-311-aes128ccm|SMB3_11|AES-128-CCM"
	"smb3-311-aes256gcm|SMB3_11|AES-256-GCM"
	"smb3-311-aes256ccm|SMB3_11|AES-256-CCM"
	"smb3-311-signed|SMB3_11|none"
)

install_deps() {
	apt_ensure samba smbclient libnss-wrapper tcpdump iproute2 tshark ethtool
}

# shellcheck source=labnet.sh
. "$HERE/labnet.sh"
need_root
cleanup() { labnet_cleanup "$SMBD_PID"; }
trap cleanup EXIT

# nss_env: the account database Samba sees (root for smbd itself, bob for the share).
nss_env() {
	echo "LD_PRELOAD=$NSS_LIB" "NSS_WRAPPER_PASSWD=$WORK/passwd" "NSS_WRAPPER_GROUP=$WORK/group"
}

# samba_conf CIPHER PROTO: the private smb.conf of one capture.
samba_conf() {
	local cipher=$1 proto=$2 encrypt=required algs=$1
	if [ "$cipher" = none ]; then
		encrypt=off algs="AES-128-GCM, AES-128-CCM, AES-256-GCM, AES-256-CCM"
	fi
	cat >"$WORK/smb.conf" <<EOF
[global]
	netbios name = $SERVER_NAME
	workgroup = $DOMAIN
	server role = standalone server
	security = user
	passdb backend = tdbsam:$WORK/state/passdb.tdb
	private dir = $WORK/state
	lock directory = $WORK/state
	state directory = $WORK/state
	cache directory = $WORK/state
	pid directory = $WORK/state
	ncalrpc dir = $WORK/state/ncalrpc
	binddns dir = $WORK/state/bind-dns
	log file = $WORK/log.smbd
	log level = 1
	interfaces = $IP_S/24
	bind interfaces only = yes
	smb ports = 445
	disable netbios = yes
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
	server min protocol = SMB3_00
	server max protocol = $proto
	server smb encrypt = $encrypt
	server smb3 encryption algorithms = $algs
	server signing = mandatory
	kerberos method = secrets only
	client use kerberos = off
	client max protocol = $proto
	client smb encrypt = $encrypt
	client smb3 encryption algorithms = $algs

[$SHARE]
	path = $WORK/share
	read only = no
	guest ok = no
	valid users = $USER_
EOF
}

samba_setup() {
	rm -rf "$WORK/state" "$WORK/share" "$WORK/log.smbd"
	mkdir -p "$WORK/state/ncalrpc" "$WORK/state/bind-dns" "$WORK/share/Temp"
	chmod 0777 "$WORK/share" "$WORK/share/Temp"
	chmod 0755 "$WORK"
	printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:20078:20078:tsch smb3 lab:%s:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
		"$USER_" "$WORK" >"$WORK/passwd"
	printf 'root:x:0:\n%s:x:20078:\nnogroup:x:65534:\n' "$USER_" >"$WORK/group"
	printf '%s\n%s\n' "$PASSWORD" "$PASSWORD" |
		env $(nss_env) smbpasswd -c "$WORK/smb.conf" -s -a "$USER_" >/dev/null
}

smbd_start() {
	# setsid: smbd signals its whole process group when it stops, which
	# with --no-process-group would otherwise be this script's.
	setsid ip netns exec "$NS_S" env $(nss_env) smbd -s "$WORK/smb.conf" -F --no-process-group --debug-stdout \
		>"$WORK/smbd.out" 2>&1 &
	SMBD_PID=$!
	local i
	for i in $(seq 1 100); do
		ip netns exec "$NS_S" ss -ltn 2>/dev/null | grep -q "$IP_S:445" && return 0
		sleep 0.1
	done
	echo "smbd did not listen on $IP_S:445" >&2
	cat "$WORK/smbd.out" >&2
	exit 1
}


# The client: put, get and delete one small file on ADMIN$, as atexec does
# with its output file, encryption required, NTLM only.
client_run() {
	local proto=$1 cipher=$2 protection=encrypt
	if [ "$cipher" = none ]; then
		protection=sign cipher="AES-128-GCM, AES-128-CCM, AES-256-GCM, AES-256-CCM"
	fi
	head -c 3000 /dev/zero | tr '\0' 'A' >"$WORK/payload.txt"
	printf 'tschsensor smb3 lab payload\n' >>"$WORK/payload.txt"
	ip netns exec "$NS_C" smbclient "//$IP_S/$SHARE" -s "$WORK/smb.conf" \
		-U "$DOMAIN\\$USER_%$PASSWORD" --use-kerberos=off --client-protection=$protection \
		-m "$proto" --option="client smb3 encryption algorithms=$cipher" \
		-c "put $WORK/payload.txt Temp\\tschsmb3.tmp; get Temp\\tschsmb3.tmp $WORK/got.txt; del Temp\\tschsmb3.tmp" \
		>"$WORK/client.out" 2>&1
	cmp -s "$WORK/payload.txt" "$WORK/got.txt" || { echo "client did not read back what it wrote" >&2; cat "$WORK/client.out" >&2; exit 1; }
}

capture() { # capture NAME PROTO CIPHER
	local name=$1 proto=$2 cipher=$3 pcap="$OUT/$1.pcap"
	echo "== $name ($proto, $cipher)"
	samba_conf "$cipher" "$proto"
	samba_setup
	smbd_start
	rm -f "$pcap"
	dump_start "$pcap"
	client_run "$proto" "$cipher"
	sleep 1
	stop_pid "$DUMP_PID" INT
	DUMP_PID=
	stop_pid "$SMBD_PID"
	SMBD_PID=
	rm -f "$WORK/got.txt"
	# The NT hash as Samba stored it: an independent check of the password.
	local nthash
	nthash=$(env $(nss_env) pdbedit -s "$WORK/smb.conf" -L -w 2>/dev/null | awk -F: -v u="$USER_" '$1 == u {print tolower($4)}')
	/usr/bin/python3 "$HERE/smb3_facts.py" --pcap "$pcap" --name "$name" --proto "$proto" --cipher "$cipher" \
		--user "$USER_" --domain "$DOMAIN" --password "$PASSWORD" --share "$SHARE" \
		--nt-hash "$nthash" --file 'Temp\tschsmb3.tmp' --bytes "$(stat -c %s "$WORK/payload.txt")" \
		--client-ip "$IP_C" --server-ip "$IP_S" --server-name "$SERVER_NAME" >"$OUT/$name.json"
}

install_deps
net_up
want=("$@")
for c in "${CAPTURES[@]}"; do
	IFS='|' read -r name proto cipher <<<"$c"
	if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx "$name"; then
		continue
	fi
	capture "$name" "$proto" "$cipher"
done
