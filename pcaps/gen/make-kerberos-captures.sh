#!/usr/bin/env bash
# make-kerberos-captures.sh: the Kerberos lab. A Samba AD DC (Debian samba
# 4.17, provisioned into a temporary directory) is the KDC; real Kerberos
# clients seal Task Scheduler calls to our lab server (pcaps/gen/tsch_lab.py
# with --keytab) and SMB3 sessions to the DC's own smbd. Writes
# pcaps/krb-*.pcap, their facts pcaps/krb-*.json and the service keys
# pcaps/keys/lab.keytab (lab keys, published on purpose).
# Run as root: bash pcaps/gen/make-kerberos-captures.sh [name...]
#
# Namespaces tschkrb-cli (10.80.0.1, veth tk-cli) and tschkrb-srv (veth
# tk-srv) holding the lab server (10.80.0.2) and the DC (10.80.0.3). Names
# resolve through a private hosts file bind-mounted over /etc/hosts in a
# private mount namespace of each client (unshare -m); clients find the KDC
# through our krb5.conf (KRB5_CONFIG). Nothing on the host is changed: every
# Samba file lives under a mktemp -d. OUT=dir writes the captures elsewhere;
# SAMBA_DEBUG=3 makes samba's log (shown when smbclient fails) verbose.
# RC4: the KDC issues RC4 tickets and session keys for TSCH-RC4$, whose
# msDS-SupportedEncryptionTypes is 4; clients keep their default enctypes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$(cd "$HERE/.." && pwd)}
PY=/usr/bin/python3
NS_C=tschkrb-cli NS_S=tschkrb-srv
IF_C=tk-cli IF_S=tk-srv
IP_C=10.80.0.1 IP_S=10.80.0.2 IP_DC=10.80.0.3
REALM=LAB.TSCH.LAN DNSDOMAIN=lab.tsch.lan DOMAIN=LAB
USER_=alice PASSWORD='Tsch-Lab-2026!'
SRV_NAME=tsch-srv.$DNSDOMAIN RC4_NAME=tsch-rc4.$DNSDOMAIN DC_NAME=dc1.$DNSDOMAIN
# Fixed machine passwords: the same keys (and keytab) on every run.
SRV_PASS='Tsch-Srv-Machine-2026!' RC4_PASS='Tsch-Rc4-Machine-2026!' DC_PASS='Tsch-Dc1-Machine-2026!'
ADMIN_PASS='Tsch-Krb-Admin-2026!' KRBTGT_PASS='Tsch-Krbtgt-2026!'
TCP_PORT=49667
WORK=$(mktemp -d /tmp/tschkrb.XXXXXX)
KEYTAB="$OUT/keys/lab.keytab"
LAB_PID= DUMP_PID= SAMBA_PID=

install_deps() {
	apt_ensure samba samba-ad-dc samba-ad-provision smbclient krb5-user ldb-tools python3-impacket tcpdump iproute2 tshark ethtool
	command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
}

# shellcheck source=labnet.sh
. "$HERE/labnet.sh"
need_root
cleanup() {
	stop_pid "$SAMBA_PID"
	# samba's own children, if its master left any: only processes in our namespace.
	local p
	for p in $(ip netns pids "$NS_S" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 50); do [ -z "$(ip netns pids "$NS_S" 2>/dev/null)" ] && break; sleep 0.1; done
	labnet_cleanup "$LAB_PID"
}
trap cleanup EXIT

# dc_setup: provisions the domain offline, adds the accounts, exports the keytab.
dc_setup() {
	local dc="$WORK/dc" conf="$WORK/dc/etc/smb.conf"
	mkdir -p "$WORK/share/Temp"
	chmod 0755 "$WORK"
	chmod 0777 "$WORK/share" "$WORK/share/Temp"
	samba-tool domain provision --use-rfc2307 --realm="$REALM" --domain="$DOMAIN" --server-role=dc \
		--dns-backend=SAMBA_INTERNAL --host-name=dc1 --host-ip="$IP_DC" --adminpass="$ADMIN_PASS" \
		--machinepass="$DC_PASS" --krbtgtpass="$KRBTGT_PASS" \
		--targetdir="$dc" --option="interfaces=$IP_DC" --option="bind interfaces only=yes" \
		--option="log file=$WORK/samba.log" --option="pid directory=$dc/run" --option="ncalrpc dir=$dc/ncalrpc" \
		--option="server services=-dns, -nbt, -dnsupdate, -kcc, -drepl" --option="dns update command=/bin/true" \
		--option="dns forwarder=127.0.0.1" >"$WORK/provision.log" 2>&1 ||
		{ tail -20 "$WORK/provision.log" >&2; exit 1; }
	cat >>"$conf" <<-EOF

	[labshare]
		path = $WORK/share
		read only = no
		smb encrypt = required
	EOF
	st() { samba-tool "$@" -s "$conf" 2>&1 | grep -v "^WARNING: no network interfaces" >>"$WORK/provision.log"; }
	st user create "$USER_" "$PASSWORD"
	st user setexpiry "$USER_" --noexpiry
	# The lab server's machine account, AES and RC4 keys, ticket in AES256; and a
	# second one that supports RC4 only (msDS-SupportedEncryptionTypes 4), so the
	# KDC issues RC4 tickets (and RC4 session keys) for it.
	st computer create TSCH-SRV --service-principal-name="host/$SRV_NAME" \
		--service-principal-name="cifs/$SRV_NAME" --service-principal-name=host/TSCH-SRV
	st computer create TSCH-RC4 --service-principal-name="host/$RC4_NAME" \
		--service-principal-name="cifs/$RC4_NAME" --service-principal-name=host/TSCH-RC4
	st user setpassword 'TSCH-SRV$' --newpassword="$SRV_PASS"
	st user setpassword 'TSCH-RC4$' --newpassword="$RC4_PASS"
	st user enable 'TSCH-SRV$'
	st user enable 'TSCH-RC4$'
	local m etypes dn
	for m in "TSCH-SRV 28 $SRV_NAME" "TSCH-RC4 4 $RC4_NAME"; do
		set -- $m
		dn=$(ldbsearch -H "$dc/private/sam.ldb" "(sAMAccountName=$1\$)" dn 2>/dev/null | sed -n 's/^dn: //p')
		printf 'dn: %s\nchangetype: modify\nreplace: msDS-SupportedEncryptionTypes\nmsDS-SupportedEncryptionTypes: %s\n-\nreplace: dNSHostName\ndNSHostName: %s\n' \
			"$dn" "$2" "$3" | ldbmodify -H "$dc/private/sam.ldb" >>"$WORK/provision.log"
	done
	mkdir -p "$(dirname "$KEYTAB")"
	rm -f "$KEYTAB"
	# Service keys only (the two lab servers and the DC's cifs/), never a user's.
	for m in 'TSCH-SRV$' 'TSCH-RC4$' 'DC1$'; do
		samba-tool domain exportkeytab "$KEYTAB" -s "$conf" --principal="$m" 2>&1 | grep -v "^WARNING" >>"$WORK/provision.log"
	done
	chmod 0644 "$KEYTAB"
	klist -ke "$KEYTAB" | grep -q 'TSCH-SRV\$' || { echo "keytab export failed" >&2; cat "$WORK/provision.log" >&2; exit 1; }

	cat >"$WORK/krb5.conf" <<-EOF
	[libdefaults]
		default_realm = $REALM
		dns_lookup_kdc = false
		dns_lookup_realm = false
		rdns = false
		dns_canonicalize_hostname = false
		udp_preference_limit = 1
	[realms]
		$REALM = {
			kdc = $IP_DC
		}
	[domain_realm]
		.$DNSDOMAIN = $REALM
		$DNSDOMAIN = $REALM
	EOF
	printf '127.0.0.1 localhost\n%s %s dc1\n%s %s %s\n' "$IP_DC" "$DC_NAME" "$IP_S" "$SRV_NAME" "$RC4_NAME" >"$WORK/hosts"
	mkdir -p "$WORK/clistate"
	cat >"$WORK/client.conf" <<-EOF
	[global]
		workgroup = $DOMAIN
		realm = $REALM
		security = ads
		name resolve order = host
		lock directory = $WORK/clistate
		state directory = $WORK/clistate
		cache directory = $WORK/clistate
		private dir = $WORK/clistate
		ncalrpc dir = $WORK/clistate
	EOF
}

dc_start() {
	ip -n "$NS_S" addr add "$IP_DC/24" dev "$IF_S"
	setsid ip netns exec "$NS_S" samba -s "$WORK/dc/etc/smb.conf" -i --debug-stdout -d${SAMBA_DEBUG:-1} >"$WORK/samba.out" 2>&1 &
	SAMBA_PID=$!
	local i
	for i in $(seq 1 150); do
		if ip netns exec "$NS_S" ss -ltn 2>/dev/null | grep -q "$IP_DC:88 " &&
			ip netns exec "$NS_S" ss -ltn 2>/dev/null | grep -q "$IP_DC:445 "; then
			return 0
		fi
		sleep 0.2
	done
	echo "samba did not start" >&2; tail -30 "$WORK/samba.out" >&2; exit 1
}

# in_client CMD...: runs in the client namespace with the lab's hosts file and krb5.conf.
in_client() {
	ip netns exec "$NS_C" unshare -m --propagation private \
		env KRB5_CONFIG="$WORK/krb5.conf" KRB5CCNAME="$WORK/ccache" \
		sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$WORK/hosts" "$@"
}

# tickets [SPN...]: a fresh TGT for alice and service tickets, from
# MIT kinit/kvno, before the capture starts (the capture then holds no KDC
# traffic). impacket 0.10's own TGS-REQ is refused by Samba 4.17
# (KRB_AP_ERR_INAPP_CKSUM: its authenticator checksum is unkeyed), so impacket
# clients take their service ticket from the ccache, as with getST.py.
tickets() {
	rm -f "$WORK/ccache"
	printf '%s\n' "$PASSWORD" | in_client kinit "$USER_@$REALM" >/dev/null
	[ $# -eq 0 ] || in_client kvno "$@" >/dev/null
}

lab_start_krb() {
	rm -rf "$WORK/root" "$WORK/events.jsonl" "$WORK/ready"
	ip netns exec "$NS_S" "$PY" "$HERE/tsch_lab.py" --addr "$IP_S" --root "$WORK/root" --tcp-port "$TCP_PORT" \
		--user "$USER_" --domain "$DOMAIN" --password "$PASSWORD" --events "$WORK/events.jsonl" \
		--ready "$WORK/ready" --keytab "$KEYTAB" --server-name TSCH-SRV ${LAB_FLAGS:-} >>"$WORK/lab.log" 2>&1 &
	LAB_PID=$!
	for _ in $(seq 100); do [ -e "$WORK/ready" ] && return 0; sleep 0.1; done
	echo "lab server did not start; log:" >&2; tail -20 "$WORK/lab.log" >&2; exit 1
}

dump_host() { # dump_host FILE HOST [PORT]: tcpdump on the server veth, only traffic of HOST (no KDC)
	rm -f "$1"
	local f="tcp and host $2"
	[ -n "${3:-}" ] && f="$f and port $3"
	ip netns exec "$NS_S" tcpdump -Z root -i "$IF_S" -s 0 -U -n -w "$1" "$f" 2>"$WORK/tcpdump.err" &
	DUMP_PID=$!
	for _ in $(seq 100); do grep -q "listening on" "$WORK/tcpdump.err" 2>/dev/null && return 0; sleep 0.1; done
	echo "tcpdump did not start" >&2; cat "$WORK/tcpdump.err" >&2; exit 1
}

check_size() {
	local size; size=$(stat -c %s "$1")
	[ "$size" -lt 409600 ] || { echo "$1 is $size bytes (limit 400 KB)" >&2; exit 1; }
	echo "   $size bytes"
}

# rpc_capture NAME EXTRA_JSON FACTS_FLAGS CLIENT...: one lab-server capture.
rpc_capture() {
	local name=$1 extra=$2 fflags=$3; shift 3
	local pcap="$OUT/$name.pcap"
	echo "== $name"
	lab_start_krb
	dump_host "$pcap" "$IP_S"
	in_client timeout 90 "$@" >"$WORK/client.out" 2>"$WORK/client.err" || {
		echo "client failed:" >&2; cat "$WORK/client.err" "$WORK/client.out" >&2; tail -30 "$WORK/lab.log" >&2; exit 1; }
	sleep 1
	stop_pid "$DUMP_PID" INT; DUMP_PID=
	stop_pid "$LAB_PID"; LAB_PID=
	[ -s "$WORK/client.json" ] || cp "$WORK/client.out" "$WORK/client.json"
	extra=$("$PY" -c 'import json,sys; e=json.loads(sys.argv[1]); e.update(client_ip=sys.argv[2], server_ip=sys.argv[3],
kdc_ip=sys.argv[4], realm=sys.argv[5], server_name=sys.argv[6],
generator="pcaps/gen/make-kerberos-captures.sh (KDC: Samba AD DC 4.17; lab server pcaps/gen/tsch_lab.py --keytab)"); print(json.dumps(e))' \
		"$extra" "$IP_C" "$IP_S" "$IP_DC" "$REALM" "${CAP_SERVER:-$SRV_NAME}")
	# shellcheck disable=SC2086
	"$PY" "$HERE/facts.py" --name "$name" --pcap "$pcap" --events "$WORK/events.jsonl" \
		--client-json "$WORK/client.json" --out "$OUT/$name.json" --keytab "$KEYTAB" \
		--keytab-name pcaps/keys/lab.keytab --tcp-port "$TCP_PORT" --extra "$extra" $fflags
	rm -f "$WORK/client.json"
	check_size "$pcap"
}

impacket_tcp() { # impacket_tcp NAME SERVER_NAME ENCTYPE
	tickets "host/$2"
	CAP_SERVER=$2 rpc_capture "$1" "{\"rpc_auth\": \"Kerberos in SPNEGO (auth type 9), DCE style, auth_level 6 (packet privacy): stubs sealed\", \"enctype\": \"$3\"}" \
		--tshark-request-gap "$PY" "$HERE/tsch_client.py" tcp-krb --target "$IP_S" --user "$USER_" --realm "$REALM" \
		--kdc "$IP_DC" --server-name "$2"
}

# atexec_krb NAME: Debian impacket's examples/atexec.py, unmodified, run as a
# program with -k -no-pass: SMB2 session setup with Kerberos (cifs/), then
# ITaskSchedulerService on \pipe\atsvc with Kerberos in SPNEGO at packet
# privacy (host/), both tickets from the ccache.
atexec_krb() { # atexec_krb NAME SERVER_NAME ENCTYPE
	local name=$1 target=$2 etype=$3 atexec=/usr/share/doc/python3-impacket/examples/atexec.py
	tickets "cifs/$target" "host/$target"
	"$PY" - "$WORK/client.json" "$atexec" "$REALM" "$USER_" "$DOMAIN" "$target" "$IP_DC" <<-'EOF'
	import hashlib, json, sys
	out, src, realm, user, domain, target, kdc = sys.argv[1:]
	json.dump({"tool": "impacket examples/atexec.py (Debian python3-impacket, unmodified, run as a program)",
	           "atexec_sha256": hashlib.sha256(open(src, "rb").read()).hexdigest(),
	           "argv": ["atexec.py", "-k", "-no-pass", "-dc-ip", kdc, "%s/%s@%s" % (realm, user, target), "whoami", "/all"],
	           "auth_level": 6, "transport": "ncacn_np:\\pipe\\atsvc", "interface": "ITaskSchedulerService",
	           "user": user, "realm": realm, "domain": domain, "smb_auth": "Kerberos in SPNEGO (cifs/%s)" % target,
	           "spn": "host/" + target, "operator_command": "whoami /all",
	           "op_sequence": ["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"]},
	          open(out, "w"))
	EOF
	CAP_SERVER=$target rpc_capture "$name" "{\"rpc_auth\": \"Kerberos in SPNEGO (auth type 9), DCE style, auth_level 6 (packet privacy): stubs sealed; SMB2 session setup with Kerberos\", \"enctype\": \"$etype\"}" \
		--tshark-request-gap "$PY" "$atexec" -k -no-pass -dc-ip "$IP_DC" "$REALM/$USER_@$target" whoami /all
	grep -q "tsch_lab fake output" "$WORK/client.out" || { echo "atexec did not read its output back" >&2; cat "$WORK/client.out" >&2; exit 1; }
}

gomsrpc_capture() { # gomsrpc_capture NAME SPN ENCTYPE RPC_AUTH_DESC CLIENT-FLAGS...
	local name=$1 spn=$2 etype=$3 desc=$4; shift 4
	tickets
	CAP_SERVER=${spn#*/} rpc_capture "$name" "{\"rpc_auth\": \"$desc\", \"enctype\": \"$etype\"}" "" \
		"$WORK/gomsrpc" -target "$IP_S" -user "$USER_" -domain "$DOMAIN" -realm "$REALM" -password "$PASSWORD" \
		-spn "$spn" -level privacy "$@"
}

# smb3_capture NAME PROTO CIPHER: smbclient with Kerberos (ticket for
# cifs/dc1...) against the DC's own smbd, encryption required, only CIPHER
# allowed on the client. put/get/del of one file on [labshare].
smb3_capture() {
	local name=$1 proto=$2 cipher=$3 pcap="$OUT/$1.pcap" file='Temp\tschkrb.tmp'
	echo "== $name ($proto, $cipher)"
	tickets
	head -c 3000 /dev/zero | tr '\0' 'K' >"$WORK/payload.txt"
	printf 'tschsensor kerberos smb3 lab payload\n' >>"$WORK/payload.txt"
	rm -f "$WORK/got.txt"
	dump_host "$pcap" "$IP_DC" 445
	in_client smbclient "//$DC_NAME/labshare" -s "$WORK/client.conf" --use-kerberos=required \
		--use-krb5-ccache="$WORK/ccache" --client-protection=encrypt -m "$proto" \
		--option="client smb3 encryption algorithms=$cipher" \
		-c "put $WORK/payload.txt $file; get $file $WORK/got.txt; del $file" >"$WORK/client.out" 2>&1 || {
		echo "smbclient failed:" >&2; cat "$WORK/client.out" >&2; grep -i -E "error|fail|denied|krb|gensec|status" "$WORK/samba.out" | tail -40 >&2; exit 1; }
	sleep 1
	stop_pid "$DUMP_PID" INT; DUMP_PID=
	cmp -s "$WORK/payload.txt" "$WORK/got.txt" || { echo "smbclient did not read back what it wrote" >&2; cat "$WORK/client.out" >&2; exit 1; }
	"$PY" "$HERE/smb3_facts.py" --pcap "$pcap" --name "$name" --proto "$proto" --cipher "$cipher" \
		--user "$USER_" --domain "$DOMAIN" --realm "$REALM" --share labshare --file "$file" \
		--bytes "$(stat -c %s "$WORK/payload.txt")" --client-ip "$IP_C" --server-ip "$IP_DC" --server-name DC1 \
		--tree-host "$DC_NAME" --keytab "$KEYTAB" --keytab-name pcaps/keys/lab.keytab \
		--auth "Kerberos in SPNEGO (ticket for cifs/$DC_NAME, AES256, from the Samba AD DC's KDC); NTLM off" \
		--generator "pcaps/gen/make-kerberos-captures.sh (Samba AD DC 4.17 smbd + smbclient --use-kerberos=required, facts pcaps/gen/smb3_facts.py)" \
		>"$OUT/$name.json"
	check_size "$pcap"
}

# dc_ready: the KDC and smbd answer, and winbindd maps the user (smbd's
# first Kerberos session setups fail with NT_STATUS_INTERNAL_ERROR until it
# does): a Kerberos SMB session, outside any capture, until one succeeds.
dc_ready() {
	tickets
	local i
	for i in $(seq 30); do
		in_client smbclient "//$DC_NAME/labshare" -s "$WORK/client.conf" --use-kerberos=required \
			--use-krb5-ccache="$WORK/ccache" -c "ls" >"$WORK/ready.out" 2>&1 && return 0
		sleep 1
	done
	echo "the DC never accepted a Kerberos SMB session:" >&2; cat "$WORK/ready.out" >&2; exit 1
}

want() { [ ${#SELECTED[@]} -eq 0 ] && return 0; local w; for w in "${SELECTED[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

main() {
	SELECTED=("$@")
	install_deps
	(cd "$REPO" && go build -o "$WORK/gomsrpc" ./pcaps/gen/gomsrpc)
	net_up
	dc_setup
	dc_start
	dc_ready
	if want krb-impacket-schtask-tcp-aes256; then impacket_tcp krb-impacket-schtask-tcp-aes256 "$SRV_NAME" aes256-cts-hmac-sha1-96; fi
	if want krb-impacket-schtask-tcp-rc4; then impacket_tcp krb-impacket-schtask-tcp-rc4 "$RC4_NAME" rc4-hmac; fi
	if want krb-impacket-schtask-tcp-fault-aes256; then
		# A call to an opnum ITaskSchedulerService lacks between the Task
		# Scheduler calls; the lab answers nca_s_op_rng_error in a sealed fault.
		tickets "host/$SRV_NAME"
		LAB_FLAGS=--seal-faults CAP_SERVER=$SRV_NAME rpc_capture krb-impacket-schtask-tcp-fault-aes256 \
			'{"rpc_auth": "Kerberos in SPNEGO (auth type 9), DCE style, auth_level 6 (packet privacy): stubs sealed; a sealed fault (nca_s_op_rng_error) between the calls", "enctype": "aes256-cts-hmac-sha1-96"}' \
			--tshark-request-gap "$PY" "$HERE/tsch_client.py" tcp-krb-fault --target "$IP_S" --user "$USER_" --realm "$REALM" \
			--kdc "$IP_DC" --server-name "$SRV_NAME"
	fi
	local k5="Kerberos (auth type 16), DCE style, auth_level 6 (packet privacy): stubs sealed, header signing"
	local sp="Kerberos in SPNEGO (auth type 9), DCE style, auth_level 6 (packet privacy): stubs sealed, header signing"
	if want krb-impacket-atexec-smb2-aes256; then
		atexec_krb krb-impacket-atexec-smb2-aes256 "$SRV_NAME" aes256-cts-hmac-sha1-96
	fi
	if want krb-impacket-atexec-smb2-rc4; then atexec_krb krb-impacket-atexec-smb2-rc4 "$RC4_NAME" rc4-hmac; fi
	if want krb-gomsrpc-schtask-tcp-aes256; then
		gomsrpc_capture krb-gomsrpc-schtask-tcp-aes256 "host/$SRV_NAME" aes256-cts-hmac-sha1-96 "$k5" -mode tcp -auth krb5
	fi
	if want krb-gomsrpc-schtask-tcp-spnego-aes256; then
		gomsrpc_capture krb-gomsrpc-schtask-tcp-spnego-aes256 "host/$SRV_NAME" aes256-cts-hmac-sha1-96 "$sp" -mode tcp -auth spnego-krb5
	fi
	if want krb-gomsrpc-schtask-tcp-rc4; then
		gomsrpc_capture krb-gomsrpc-schtask-tcp-rc4 "host/$RC4_NAME" rc4-hmac "$k5" -mode tcp -auth krb5
	fi
	if want krb-gomsrpc-schtask-np-aes256; then
		gomsrpc_capture krb-gomsrpc-schtask-np-aes256 "host/$SRV_NAME" aes256-cts-hmac-sha1-96 "$k5" -mode np -auth krb5 \
			-smb-auth krb5 -smb-spn "cifs/$SRV_NAME"
	fi
	local c n p ci
	for c in "krb-smb3-300-aes128ccm|SMB3_00|AES-128-CCM" "krb-smb3-311-aes128ccm|SMB3_11|AES-128-CCM" \
		"krb-smb3-311-aes128gcm|SMB3_11|AES-128-GCM" "krb-smb3-311-aes256ccm|SMB3_11|AES-256-CCM" \
		"krb-smb3-311-aes256gcm|SMB3_11|AES-256-GCM"; do
		IFS='|' read -r n p ci <<<"$c"
		if want "$n"; then smb3_capture "$n" "$p" "$ci"; fi
	done
	du -ch "$OUT"/krb-*.pcap | tail -1
}

main "$@"
