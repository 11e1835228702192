#!/usr/bin/python3
"""facts: writes pcaps/<name>.json for one capture made by make-captures.sh.

The facts come from three independent places and are cross-checked:
  * what the client says it sent (tsch_client.py's JSON, or atexec's output),
  * what the lab server decoded (tsch_lab.py --events JSON lines),
  * what tshark dissects in the pcap (frame numbers of every DCE-RPC PDU).
Exit status is non-zero when they disagree, so a broken capture fails the run.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys

OPS = {
    "ITaskSchedulerService": {0: "SchRpcHighestVersion", 1: "SchRpcRegisterTask", 12: "SchRpcRun",
                              13: "SchRpcDelete", 16: "SchRpcGetLastRunInfo"},
    "ATSVC": {0: "NetrJobAdd", 1: "NetrJobDel"},
    "SASec": {0: "SASetAccountInformation"},
    "EPM": {3: "ept_map"},
}
PKT = {"0": "request", "2": "response", "3": "fault", "11": "bind", "12": "bind_ack", "13": "bind_nak",
       "14": "alter_context", "15": "alter_context_resp", "16": "auth3"}


def decrypt_opts(password, keytab=None):
    """tshark options that open the capture: the NTLM password or a Kerberos keytab."""
    if keytab:
        return ["-o", "kerberos.decrypt:TRUE", "-o", "kerberos.file:" + keytab]
    return ["-o", "ntlmssp.nt_password:" + password]


def tshark_fields(pcap, opts, tcp_port, display_filter, fields):
    """tshark's fields for each frame of pcap that display_filter passes, with
    tcp_port decoded as DCE/RPC: one dict a frame, field name to its
    occurrences joined with commas."""
    cmd = ["tshark", "-n", "-r", pcap] + opts + ["-d", "tcp.port==%d,dcerpc" % tcp_port, "-Y", display_filter,
                                                 "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
                                                 "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [dict(zip(fields, line.split("\t"))) for line in out.splitlines()]


def kerberos_rows(pcap, keytab):
    """Every Kerberos AP-REQ tshark opens with the keytab: frame, client, service, enctypes."""
    fields = ["frame.number", "kerberos.msg_type", "kerberos.CNameString", "kerberos.crealm", "kerberos.SNameString",
              "kerberos.realm", "kerberos.etype", "kerberos.keytype", "kerberos.kvno"]
    rows = []
    for col in tshark_fields(pcap, decrypt_opts(None, keytab), 49667, "kerberos.msg_type == 14", fields):
        rows.append({"frame": int(col["frame.number"]), "cname": col["kerberos.CNameString"].split(",")[0] or None,
                     "crealm": col["kerberos.crealm"].split(",")[0] or None,
                     "sname": "/".join(x for x in col["kerberos.SNameString"].split(",")[:2] if x) or None,
                     "etypes": [int(x) for x in col["kerberos.etype"].split(",") if x],
                     "keytypes": [int(x) for x in col["kerberos.keytype"].split(",") if x]})
    return rows


def tshark_rows(pcap, password, tcp_port, keytab=None):
    fields = ["frame.number", "ip.src", "tcp.srcport", "tcp.dstport", "tcp.stream", "dcerpc.pkt_type",
              "dcerpc.cn_call_id", "dcerpc.opnum", "dcerpc.auth_level", "dcerpc.cn_ctx_id", "smb.cmd", "smb2.cmd"]
    pdus = []
    for col in tshark_fields(pcap, decrypt_opts(password, keytab), tcp_port, "dcerpc", fields):
        types = col["dcerpc.pkt_type"].split(",")
        calls = col["dcerpc.cn_call_id"].split(",")
        opnums = [o for o in col["dcerpc.opnum"].split(",") if o]
        levels = [x for x in col["dcerpc.auth_level"].split(",") if x]
        oi = 0
        for i, t in enumerate(types):
            ptype = PKT.get(t, t)
            op = None
            if ptype in ("request", "response") and oi < len(opnums):
                op = int(opnums[oi])
                oi += 1
            pdus.append({"frame": int(col["frame.number"]), "src": col["ip.src"], "sport": int(col["tcp.srcport"]),
                         "dport": int(col["tcp.dstport"]), "tcp_stream": int(col["tcp.stream"]), "pdu": ptype,
                         "call_id": int(calls[i]) if i < len(calls) and calls[i] else None, "opnum": op,
                         "auth_level": int(levels[0]) if levels else None})
    return pdus


def tshark_version():
    return subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def decrypted_count(pcap, password, keytab=None, tcp_port=49667):
    out = subprocess.run(["tshark", "-n", "-r", pcap] + decrypt_opts(password, keytab) + [
                          "-d", "tcp.port==%d,dcerpc" % tcp_port, "-Y",
                          "dcerpc.decrypted_stub_data", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--pcap", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--client-json", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--password", default="")
    p.add_argument("--keytab", help="Kerberos captures: the service keytab tshark opens them with")
    p.add_argument("--keytab-name", help="the keytab's path as the facts name it (repository-relative)")
    p.add_argument("--tshark-request-gap", action="store_true",
                   help="tshark 4.0 cannot unseal this client's requests (impacket 0.10's RFC 4121 tokens with EC "
                        "other than 16): require it to unseal every response, and the lab server every request")
    p.add_argument("--tcp-port", type=int, default=49667)
    p.add_argument("--extra", default="{}", help="JSON object merged into the facts")
    a = p.parse_args()

    client = json.load(open(a.client_json))
    events = [json.loads(l) for l in open(a.events) if l.strip()]
    for e in events:
        e.pop("ts", None)
    calls = [e for e in events if "op" in e]
    pdus = tshark_rows(a.pcap, a.password, a.tcp_port, a.keytab)

    # Tie each server-decoded call to the frames of its request/response.
    problems = []
    key_calls = []
    for e in calls:
        # A fault names no opnum: it answers the call of its call id.
        frames = [d for d in pdus if d["call_id"] == e["call_id"] and
                  (d["opnum"] == e["opnum"] and d["pdu"] in ("request", "response") or d["pdu"] == "fault")]
        # Several associations can reuse call ids: keep the ones in the right transport.
        if e["endpoint"].startswith("ncacn_ip_tcp:"):
            port = int(e["endpoint"].split(":")[1])
            frames = [d for d in frames if port in (d["sport"], d["dport"])]
        else:
            frames = [d for d in frames if d["sport"] in (445, 139) or d["dport"] in (445, 139)]
        req = [d["frame"] for d in frames if d["pdu"] == "request"]
        resp = [d["frame"] for d in frames if d["pdu"] == "response"]
        fault = [d["frame"] for d in frames if d["pdu"] == "fault"]
        if not req or not resp and not fault:
            problems.append("no request/response frames for %s call %d" % (e["op"], e["call_id"]))
        kc = {"op": e["op"], "interface": e["interface"], "opnum": e["opnum"], "call_id": e["call_id"],
              "request_frames": req, "response_frames": resp}
        if fault:
            kc["fault_frames"] = fault
        for k in ("path", "command", "arguments", "user_id", "creds", "logon_type", "flags", "job_id",
                  "job_name", "account", "password", "job_flags", "server_name", "ndr64", "requested",
                  "xml_sha256_utf16le", "job_time", "days_of_month", "days_of_week", "session_id", "sddl"):
            if k in e:
                kc[k] = e[k]
        key_calls.append(kc)
    if client.get("actual_path") is not None and client.get("task_path") and \
            client["actual_path"] != client["task_path"]:
        problems.append("the server answered path %r to %r" % (client["actual_path"], client["task_path"]))
    if client.get("op_sequence"):
        got = [c["op"] for c in calls if c["interface"] != "EPM"]
        if got != client["op_sequence"]:
            problems.append("server saw %s, client meant %s" % (got, client["op_sequence"]))

    binds = [d for d in pdus if d["pdu"] in ("bind", "bind_ack", "auth3", "alter_context", "alter_context_resp")]
    data = open(a.pcap, "rb").read()
    facts = {
        "pcap": os.path.basename(a.pcap),
        "pcap_sha256": hashlib.sha256(data).hexdigest(),
        "pcap_bytes": len(data),
        "generator": "pcaps/gen/make-captures.sh (lab server pcaps/gen/tsch_lab.py)",
        "network_mode": "netns",
        "client_ip": "10.77.0.1",
        "server_ip": "10.77.0.2",
        "server_name": "TSCH-LAB-SRV",
        "user": client.get("user", "alice"),
        "domain": client.get("domain", "LAB"),
        "password": a.password or None,
        "nt_hash": (hashlib.new("md4", a.password.encode("utf-16le")).hexdigest() if "md4" in hashlib.algorithms_available
                    else __import__("impacket.ntlm", fromlist=["x"]).compute_nthash(a.password).hex())
        if a.password else None,
        "client": client,
        "server_decoded": events,
        "calls": key_calls,
        "rpc_setup_frames": binds,
        "dcerpc_pdus": pdus,
        "tshark_version": tshark_version(),
        "tshark_decrypt_option": "-o 'ntlmssp.nt_password:%s'" % a.password if not a.keytab else
        "-o kerberos.decrypt:TRUE -o 'kerberos.file:%s'" % (a.keytab_name or a.keytab),
        "problems": problems,
    }
    # Whether the interesting strings are readable off the wire (false when sealed).
    seen = {}
    for c in key_calls:
        for k in ("path", "command", "arguments", "job_name"):
            v = c.get(k)
            if v:
                seen["%s %s (utf16le)" % (c["op"], k)] = v.encode("utf-16le") in data
    facts["cleartext_in_pcap"] = seen
    facts.update(json.loads(a.extra))
    if a.keytab:
        facts["keytab"] = a.keytab_name or a.keytab
        krb = [e for e in events if e.get("kind") == "kerberos_ap_req"]
        facts["kerberos_ap_req"] = kerberos_rows(a.pcap, a.keytab)
        opened = [r for r in facts["kerberos_ap_req"] if r["cname"]]
        if not krb or not opened:
            problems.append("no Kerberos AP-REQ opened (server %d, tshark %d)" % (len(krb), len(opened)))
        for r in opened:
            if r["cname"] != client.get("user") or r["crealm"] != client.get("realm"):
                problems.append("tshark's ticket names %s@%s, client is %s@%s" % (
                    r["cname"], r["crealm"], client.get("user"), client.get("realm")))
        for e in krb:
            if e["cname"] != client.get("user") or e["crealm"] != client.get("realm"):
                problems.append("server's ticket names %s@%s" % (e["cname"], e["crealm"]))
    if any(d["auth_level"] == 6 for d in pdus):
        facts["tshark_decrypted_frames"] = decrypted_count(a.pcap, a.password, a.keytab, a.tcp_port)
        # Only calls made at packet privacy are sealed (an EPM lookup before them is not).
        # tshark shows decrypted_stub_data only for interfaces it has no dissector for:
        # srvsvc (tcp-interleaved) is opened and dissected, so it is not counted here.
        # Nor does it for a call the server faulted (op "unsupported"): its
        # request stub and its fault's are empty.
        sealed = sorted(f for e, c in zip(calls, key_calls) if e.get("auth_level") == 6 and e.get("interface") != "srvsvc"
                        and e.get("op") != "unsupported" for f in c["request_frames"] + c["response_frames"])
        want = sealed
        if a.tshark_request_gap:
            want = sorted(f for e, c in zip(calls, key_calls) if e.get("auth_level") == 6 and e.get("op") != "unsupported"
                          for f in c["response_frames"])
            facts["tshark_unopened_frames"] = sorted(set(sealed) - set(facts["tshark_decrypted_frames"]))
        got = facts["tshark_decrypted_frames"]
        ok = got == want if not a.tshark_request_gap else set(want) <= set(got) <= set(sealed)
        if not ok:
            problems.append("tshark decrypted %s, sealed PDUs are in %s" % (facts["tshark_decrypted_frames"], want))
        # Paths may show in SMB file names (atexec reads ADMIN$\\Temp\\<task>.tmp); commands must not.
        if any(v for k, v in seen.items() if "command" in k or "arguments" in k):
            problems.append("sealed capture shows cleartext: %s" % seen)
    with open(a.out, "w") as fh:
        json.dump(facts, fh, indent=2, sort_keys=True)
        fh.write("\n")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
