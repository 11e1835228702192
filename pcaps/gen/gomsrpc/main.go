// Command gomsrpc drives go-msrpc's own ITaskSchedulerService client against
// the lab server (pcaps/gen/tsch_lab.py) so the project has captures from a
// client implementation other than impacket. It is run by
// pcaps/gen/make-gomsrpc-captures.sh inside the client network namespace and
// prints one JSON object describing what it sent (the capture's facts).
//
// Everything it sends is fixed by its flags except what the protocols make
// random (NTLM client challenge, exported session key, TCP ports).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/oiweiwei/go-msrpc/dcerpc"
	"github.com/oiweiwei/go-msrpc/msrpc/dcetypes"
	"github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"
	tsch "github.com/oiweiwei/go-msrpc/msrpc/tsch/itaskschedulerservice/v1"
	"github.com/oiweiwei/go-msrpc/smb2"
	"github.com/oiweiwei/go-msrpc/ssp"
	"github.com/oiweiwei/go-msrpc/ssp/credential"
	"github.com/oiweiwei/go-msrpc/ssp/gssapi"
	"github.com/oiweiwei/go-msrpc/ssp/krb5"
)

// MS-TSCH constants the client uses.
const (
	taskCreate             = 0x2 // SchRpcRegisterTask flags: TASK_CREATE
	taskLogonServiceAcct   = 5   // TASK_LOGON_SERVICE_ACCOUNT
	defaultEPMPort         = 135
	defaultTaskPathPrefix  = `\Microsoft\Windows\TschLab\GoMsrpc`
	defaultCommand         = `rundll32.exe`
	defaultArguments       = `C:\ProgramData\TschLab\lab.dll,Start -q "go-msrpc" & exit`
	defaultRunAs           = `S-1-5-18`
	registerTaskOpSequence = "SchRpcRegisterTask,SchRpcRun,SchRpcDelete"
	closeWait              = 2 * time.Second
)

type options struct {
	mode      string // tcp or np
	level     string // privacy, connect or none
	ndr64     bool
	target    string
	user      string
	domain    string
	password  string
	path      string
	command   string
	arguments string
	runAs     string
	dialect   uint
	auth      string // ntlm, krb5 (raw Kerberos, auth type 16) or spnego-krb5 (Kerberos in SPNEGO, 9)
	realm     string // Kerberos realm (krb5 modes)
	spn       string // service principal of the RPC server (krb5 modes)
	smbAuth   string // SMB session setup for -mode np: ntlm or krb5
	smbSPN    string // service principal of the SMB server (cifs/...)
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "tcp", "transport: tcp (EPM ept_map then ncacn_ip_tcp) or np (ncacn_np over SMB2 \\pipe\\atsvc); legacy-job writes a .job file with go-smb2, then SASetAccountInformation over np")
	flag.StringVar(&o.level, "level", "privacy", "RPC auth level: privacy (sealed), connect or none")
	flag.BoolVar(&o.ndr64, "ndr64", false, "offer only the NDR64 transfer syntax")
	flag.StringVar(&o.target, "target", "10.79.0.2", "lab server address")
	flag.StringVar(&o.user, "user", "alice", "account")
	flag.StringVar(&o.domain, "domain", "LAB", "account domain")
	flag.StringVar(&o.password, "password", "", "account password")
	flag.StringVar(&o.path, "path", "", "task path (default derived from mode/level)")
	flag.StringVar(&o.command, "command", defaultCommand, "Exec action command")
	flag.StringVar(&o.arguments, "arguments", defaultArguments, "Exec action arguments")
	flag.StringVar(&o.runAs, "run-as", defaultRunAs, "Principal UserId")
	flag.UintVar(&o.dialect, "smb-dialect", 0x0202, "SMB2 dialect for -mode np")
	flag.StringVar(&o.auth, "auth", "ntlm", "RPC authentication: ntlm, krb5 (auth type 16) or spnego-krb5 (auth type 9); "+
		"krb5 modes read KRB5_CONFIG for the KDC")
	flag.StringVar(&o.realm, "realm", "", "Kerberos realm")
	flag.StringVar(&o.spn, "spn", "", "RPC server's service principal, e.g. host/tsch-srv.lab.tsch.lan")
	flag.StringVar(&o.smbAuth, "smb-auth", "ntlm", "SMB session setup authentication for -mode np: ntlm or krb5 (SPNEGO)")
	flag.StringVar(&o.smbSPN, "smb-spn", "", "SMB server's service principal, e.g. cifs/tsch-srv.lab.tsch.lan")
	flag.Parse()
	if o.password == "" {
		fmt.Fprintln(os.Stderr, "gomsrpc: -password is required")
		os.Exit(2)
	}
	if o.path == "" {
		o.path = defaultTaskPathPrefix + strings.ToUpper(o.mode[:1]) + o.mode[1:]
		if o.auth != "ntlm" {
			o.path += "Krb"
		}
		switch o.level {
		case "connect":
			o.path += "Connect"
		case "none":
			o.path += "NoAuth"
		}
		if o.ndr64 {
			o.path += "64"
		}
	}
	run := run
	if o.mode == "legacy-job" {
		run = legacyJob
	}
	facts, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gomsrpc:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(facts); err != nil {
		fmt.Fprintln(os.Stderr, "gomsrpc:", err)
		os.Exit(1)
	}
}

// taskXML is the task definition: a hidden task running one Exec action as
// the given principal, in the shape Task Scheduler itself exports.
func taskXML(o options) string {
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace
	return `<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Author>` + esc(o.domain+`\`+o.user) + `</Author>
    <URI>` + esc(o.path) + `</URI>
  </RegistrationInfo>
  <Triggers>
    <BootTrigger>
      <Enabled>true</Enabled>
    </BootTrigger>
  </Triggers>
  <Principals>
    <Principal id="LocalSystem">
      <UserId>` + esc(o.runAs) + `</UserId>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <Enabled>true</Enabled>
    <Hidden>true</Hidden>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
  </Settings>
  <Actions Context="LocalSystem">
    <Exec>
      <Command>` + esc(o.command) + `</Command>
      <Arguments>` + esc(o.arguments) + `</Arguments>
    </Exec>
  </Actions>
</Task>
`
}

func securityOption(level string) (dcerpc.Option, int, error) {
	switch level {
	case "privacy":
		return dcerpc.WithSeal(), 6, nil
	case "connect":
		return dcerpc.WithConnect(), 2, nil
	case "none":
		return dcerpc.WithInsecure(), 1, nil
	}
	return nil, 0, fmt.Errorf("unknown level %q", level)
}

// rpcAuthType is the DCE-RPC auth type the bind uses.
func rpcAuthType(o options) (dcerpc.AuthType, string, error) {
	switch o.auth {
	case "ntlm":
		return dcerpc.AuthTypeWinNT, "NTLMSSP (auth type 10, RPC_C_AUTHN_WINNT)", nil
	case "krb5":
		return dcerpc.AuthTypeKerberos, "Kerberos (auth type 16, RPC_C_AUTHN_GSS_KERBEROS), DCE style", nil
	case "spnego-krb5":
		return dcerpc.AuthTypeGSSNegotiate, "Kerberos in SPNEGO (auth type 9, RPC_C_AUTHN_GSS_NEGOTIATE), DCE style", nil
	}
	return 0, "", fmt.Errorf("unknown -auth %q", o.auth)
}

// securityContext puts credentials and mechanisms in the context (not in
// package state of ours). Kerberos takes the KDC and realm from the
// krb5.conf KRB5_CONFIG names; go-msrpc's client asks the KDC itself.
func securityContext(ctx context.Context, o options, auth string) context.Context {
	if auth == "ntlm" {
		return gssapi.NewSecurityContext(ctx,
			gssapi.WithCredential(credential.NewFromPassword(o.domain+`\`+o.user, o.password)),
			gssapi.WithMechanismFactory(ssp.NTLM),
			gssapi.WithMechanismFactory(ssp.SPNEGO),
		)
	}
	return gssapi.NewSecurityContext(ctx,
		gssapi.WithCredential(credential.NewFromPassword(o.user+"@"+o.realm, o.password)),
		gssapi.WithMechanismFactory(ssp.KRB5, krb5.NewConfig()),
		gssapi.WithMechanismFactory(ssp.SPNEGO),
	)
}

func run(ctx context.Context, o options) (map[string]any, error) {
	authType, authDesc, err := rpcAuthType(o)
	if err != nil {
		return nil, err
	}
	ctx = securityContext(ctx, o, o.auth)
	secOpt, level, err := securityOption(o.level)
	if err != nil {
		return nil, err
	}
	facts := map[string]any{
		"interface":        "ITaskSchedulerService",
		"library":          "github.com/oiweiwei/go-msrpc v1.5.2",
		"client":           "pcaps/gen/gomsrpc (go run ./pcaps/gen/gomsrpc -mode " + o.mode + " -level " + o.level + ndr64Flag(o.ndr64) + ")",
		"auth_level":       level,
		"transfer_syntax":  map[bool]string{false: "NDR", true: "NDR64"}[o.ndr64],
		"task_path":        o.path,
		"command":          o.command,
		"arguments":        o.arguments,
		"run_as":           o.runAs,
		"logon_type":       taskLogonServiceAcct,
		"register_flags":   taskCreate,
		"user":             o.user,
		"domain":           o.domain,
		"op_sequence":      strings.Split(registerTaskOpSequence, ","),
		"task_xml":         taskXML(o),
		"hidden":           true,
		"rpc_auth_type":    map[bool]string{false: authDesc, true: "none"}[o.level == "none"],
		"go_msrpc_options": []string{},
	}

	var cc dcerpc.Conn
	var bindOpts []dcerpc.Option
	switch o.mode {
	case "tcp":
		port, err := eptMap(ctx, o.target)
		if err != nil {
			return nil, err
		}
		facts["epm_port"] = defaultEPMPort
		facts["tcp_port"] = port
		binding := fmt.Sprintf("ncacn_ip_tcp:%s[%d]", o.target, port)
		facts["transport"] = binding
		if cc, err = dcerpc.Dial(ctx, binding); err != nil {
			return nil, fmt.Errorf("dial %s: %w", binding, err)
		}
	case "np":
		smbSec := []gssapi.ContextOption{gssapi.WithMechanismFactory(ssp.SPNEGO), gssapi.WithMechanismFactory(ssp.NTLM),
			gssapi.WithCredential(credential.NewFromPassword(o.domain+`\`+o.user, o.password))}
		facts["smb_auth"] = "NTLMSSP in SPNEGO"
		if o.smbAuth == "krb5" {
			// go-smb2.fork always makes two session setup round trips, so
			// go-msrpc's Kerberos stays DCE style (AP-REP echo) on SMB too.
			smbSec = []gssapi.ContextOption{gssapi.WithMechanismFactory(ssp.SPNEGO),
				gssapi.WithMechanismFactory(ssp.KRB5, krb5.NewConfig()),
				gssapi.WithCredential(credential.NewFromPassword(o.user+"@"+o.realm, o.password)),
				gssapi.WithTargetName(o.smbSPN)}
			facts["smb_auth"] = "Kerberos in SPNEGO (" + o.smbSPN + ")"
		}
		dialer := smb2.NewDialer(smb2.WithDialect(smb2.Dialect(o.dialect)), smb2.WithSecurity(smbSec...))
		binding := fmt.Sprintf(`ncacn_np:%s[\pipe\atsvc]`, o.target)
		facts["transport"] = `ncacn_np:\pipe\atsvc`
		facts["smb_dialect"] = fmt.Sprintf("0x%04x", o.dialect)
		if cc, err = dcerpc.Dial(ctx, binding, dcerpc.WithSMBDialer(dialer)); err != nil {
			return nil, fmt.Errorf("dial %s: %w", binding, err)
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", o.mode)
	}
	defer closeConn(ctx, cc)

	bindOpts = append(bindOpts, secOpt)
	if o.level != "none" {
		// NTLM: raw NTLMSSP (auth type 10) as the lab accepts, not SPNEGO (9).
		bindOpts = append(bindOpts, dcerpc.WithSecurtyProvider(authType))
		if o.auth != "ntlm" {
			bindOpts = append(bindOpts, dcerpc.WithTargetName(o.spn))
			facts["spn"] = o.spn
			facts["realm"] = o.realm
		}
	}
	if o.ndr64 {
		bindOpts = append(bindOpts, dcerpc.WithNDR64())
	}
	cli, err := tsch.NewTaskSchedulerServiceClient(ctx, cc, bindOpts...)
	if err != nil {
		return nil, fmt.Errorf("bind ITaskSchedulerService: %w", err)
	}
	reg, err := cli.RegisterTask(ctx, &tsch.RegisterTaskRequest{
		Path:      o.path,
		XML:       taskXML(o),
		Flags:     taskCreate,
		LogonType: taskLogonServiceAcct,
	})
	if err != nil {
		return nil, fmt.Errorf("SchRpcRegisterTask: %w", err)
	}
	if reg.Return != 0 {
		return nil, fmt.Errorf("SchRpcRegisterTask returned 0x%08x", uint32(reg.Return))
	}
	facts["actual_path"] = reg.ActualPath
	run, err := cli.Run(ctx, &tsch.RunRequest{Path: o.path})
	if err != nil {
		return nil, fmt.Errorf("SchRpcRun: %w", err)
	}
	if run.Return != 0 {
		return nil, fmt.Errorf("SchRpcRun returned 0x%08x", uint32(run.Return))
	}
	del, err := cli.Delete(ctx, &tsch.DeleteRequest{Path: o.path})
	if err != nil {
		return nil, fmt.Errorf("SchRpcDelete: %w", err)
	}
	if del.Return != 0 {
		return nil, fmt.Errorf("SchRpcDelete returned 0x%08x", uint32(del.Return))
	}
	return facts, nil
}

// closeConn closes the association (CLOSE, TREE_DISCONNECT, LOGOFF on a
// pipe) but waits at most closeWait: after LOGOFF's response go-smb2.fork
// v1.0.2 blocks handing "done" to its reader goroutine, which sits in a read
// until the server drops the connection, and impacket's server never does.
// Exiting the process then ends the TCP connection with a FIN.
func closeConn(ctx context.Context, cc dcerpc.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := cc.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "gomsrpc: close:", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		fmt.Fprintln(os.Stderr, "gomsrpc: close did not return, leaving it to process exit")
	}
}

func ndr64Flag(b bool) string {
	if b {
		return " -ndr64"
	}
	return ""
}

// eptMap asks the endpoint mapper on tcp/135 with ept_map (opnum 3, no RPC
// authentication, as Windows clients do) for ITaskSchedulerService over
// ncacn_ip_tcp and returns the port it names.
func eptMap(ctx context.Context, target string) (int, error) {
	binding := fmt.Sprintf("ncacn_ip_tcp:%s[%d]", target, defaultEPMPort)
	cc, err := dcerpc.Dial(ctx, binding)
	if err != nil {
		return 0, fmt.Errorf("dial endpoint mapper: %w", err)
	}
	defer cc.Close(ctx)
	cli, err := epm.NewEpmClient(ctx, cc, dcerpc.WithInsecure())
	if err != nil {
		return 0, fmt.Errorf("bind endpoint mapper: %w", err)
	}
	ip := net.ParseIP(target).To4()
	if ip == nil {
		return 0, fmt.Errorf("target %q is not an IPv4 address", target)
	}
	minor := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	ifUUID := tsch.TaskSchedulerServiceSyntaxUUID
	ndr := dcerpc.TransferNDRSyntaxV2_0
	tower := dcetypes.FloorsToTower([]*dcetypes.Floor{
		{Protocol: uint8(dcetypes.ProtocolUUID), UUID: ifUUID, VersionMajor: 1, Data: minor(0)},
		{Protocol: uint8(dcetypes.ProtocolUUID), UUID: ndr.IfUUID, VersionMajor: ndr.IfVersionMajor, Data: minor(ndr.IfVersionMinor)},
		{Protocol: uint8(dcetypes.ProtocolRPC_CO), Data: minor(0)},
		{Protocol: uint8(dcetypes.ProtocolTCP), Data: []byte{0, 0}},
		{Protocol: uint8(dcetypes.ProtocolIP), Data: []byte(ip)},
	})
	tower.TowerLength = uint32(len(tower.TowerOctetString))
	resp, err := cli.Map(ctx, &epm.MapRequest{
		Object:      nil,
		MapTower:    tower,
		EntryHandle: &epm.LookupHandle{},
		MaxTowers:   4,
	})
	if err != nil {
		return 0, fmt.Errorf("ept_map: %w", err)
	}
	if resp.Status != 0 {
		return 0, fmt.Errorf("ept_map status 0x%08x", resp.Status)
	}
	for _, t := range resp.Towers {
		if t == nil {
			continue
		}
		for _, f := range t.Floors() {
			if int(f.Protocol) == dcetypes.ProtocolTCP && len(f.Data) == 2 {
				return int(f.Port()), nil
			}
		}
	}
	return 0, errors.New("ept_map: no ncacn_ip_tcp tower in the answer")
}
