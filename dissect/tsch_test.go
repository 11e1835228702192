package dissect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/oiweiwei/go-msrpc/msrpc/dtyp"
	epmv3 "github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"
	"github.com/oiweiwei/go-msrpc/msrpc/erref/hresult"
	"github.com/oiweiwei/go-msrpc/msrpc/erref/win32"
	gotsch "github.com/oiweiwei/go-msrpc/msrpc/tsch"
	tschatsvc "github.com/oiweiwei/go-msrpc/msrpc/tsch/atsvc/v1"
	tschitss "github.com/oiweiwei/go-msrpc/msrpc/tsch/itaskschedulerservice/v1"
	tschsasec "github.com/oiweiwei/go-msrpc/msrpc/tsch/sasec/v1"
	"github.com/oiweiwei/go-msrpc/ndr"
)

// Stubs from A_hangchuanin__atexec.pcapng (Impacket atexec.py, NDR20,
// drep 10000000), extracted with tshark from the DCE-RPC PDUs carried in
// SMB2 WRITE/READ: the bytes after the 24-byte request/response header.

// atexecRegisterTaskReq is SchRpcRegisterTask, frame 24 (TCP segments 22-24).
const atexecRegisterTaskReq = "" +
	"abd300000a000000000000000a0000005c006e0054004d00670078005600720056000000a505000000000000a50500003c003f0078006d006c00200076006500" +
	"7200730069006f006e003d00220031002e0030002200200065006e0063006f00640069006e0067003d0022005500540046002d003100360022003f003e000a00" +
	"3c005400610073006b002000760065007200730069006f006e003d00220031002e0032002200200078006d006c006e0073003d00220068007400740070003a00" +
	"2f002f0073006300680065006d00610073002e006d006900630072006f0073006f00660074002e0063006f006d002f00770069006e0064006f00770073002f00" +
	"32003000300034002f00300032002f006d00690074002f007400610073006b0022003e000a00200020003c00540072006900670067006500720073003e000a00" +
	"20002000200020003c00430061006c0065006e0064006100720054007200690067006700650072003e000a002000200020002000200020003c00530074006100" +
	"7200740042006f0075006e0064006100720079003e0032003000310035002d00300037002d00310035005400320030003a00330035003a00310033002e003200" +
	"3700350037003200390034003c002f005300740061007200740042006f0075006e0064006100720079003e000a002000200020002000200020003c0045006e00" +
	"610062006c00650064003e0074007200750065003c002f0045006e00610062006c00650064003e000a002000200020002000200020003c005300630068006500" +
	"640075006c006500420079004400610079003e000a00200020002000200020002000200020003c00440061007900730049006e00740065007200760061006c00" +
	"3e0031003c002f00440061007900730049006e00740065007200760061006c003e000a002000200020002000200020003c002f00530063006800650064007500" +
	"6c006500420079004400610079003e000a0020002000200020003c002f00430061006c0065006e0064006100720054007200690067006700650072003e000a00" +
	"200020003c002f00540072006900670067006500720073003e000a00200020003c005000720069006e0063006900700061006c0073003e000a00200020002000" +
	"20003c005000720069006e0063006900700061006c002000690064003d0022004c006f00630061006c00530079007300740065006d0022003e000a0020002000" +
	"20002000200020003c005500730065007200490064003e0053002d0031002d0035002d00310038003c002f005500730065007200490064003e000a0020002000" +
	"20002000200020003c00520075006e004c006500760065006c003e00480069006700680065007300740041007600610069006c00610062006c0065003c002f00" +
	"520075006e004c006500760065006c003e000a0020002000200020003c002f005000720069006e0063006900700061006c003e000a00200020003c002f005000" +
	"720069006e0063006900700061006c0073003e000a00200020003c00530065007400740069006e00670073003e000a0020002000200020003c004d0075006c00" +
	"7400690070006c00650049006e007300740061006e0063006500730050006f006c006900630079003e00490067006e006f00720065004e00650077003c002f00" +
	"4d0075006c007400690070006c00650049006e007300740061006e0063006500730050006f006c006900630079003e000a0020002000200020003c0044006900" +
	"730061006c006c006f00770053007400610072007400490066004f006e004200610074007400650072006900650073003e00660061006c00730065003c002f00" +
	"44006900730061006c006c006f00770053007400610072007400490066004f006e004200610074007400650072006900650073003e000a002000200020002000" +
	"3c00530074006f0070004900660047006f0069006e0067004f006e004200610074007400650072006900650073003e00660061006c00730065003c002f005300" +
	"74006f0070004900660047006f0069006e0067004f006e004200610074007400650072006900650073003e000a0020002000200020003c0041006c006c006f00" +
	"770048006100720064005400650072006d0069006e006100740065003e0074007200750065003c002f0041006c006c006f007700480061007200640054006500" +
	"72006d0069006e006100740065003e000a0020002000200020003c00520075006e004f006e006c007900490066004e006500740077006f0072006b0041007600" +
	"610069006c00610062006c0065003e00660061006c00730065003c002f00520075006e004f006e006c007900490066004e006500740077006f0072006b004100" +
	"7600610069006c00610062006c0065003e000a0020002000200020003c00490064006c006500530065007400740069006e00670073003e000a00200020002000" +
	"2000200020003c00530074006f0070004f006e00490064006c00650045006e0064003e0074007200750065003c002f00530074006f0070004f006e0049006400" +
	"6c00650045006e0064003e000a002000200020002000200020003c0052006500730074006100720074004f006e00490064006c0065003e00660061006c007300" +
	"65003c002f0052006500730074006100720074004f006e00490064006c0065003e000a0020002000200020003c002f00490064006c0065005300650074007400" +
	"69006e00670073003e000a0020002000200020003c0041006c006c006f007700530074006100720074004f006e00440065006d0061006e0064003e0074007200" +
	"750065003c002f0041006c006c006f007700530074006100720074004f006e00440065006d0061006e0064003e000a0020002000200020003c0045006e006100" +
	"62006c00650064003e0074007200750065003c002f0045006e00610062006c00650064003e000a0020002000200020003c00480069006400640065006e003e00" +
	"74007200750065003c002f00480069006400640065006e003e000a0020002000200020003c00520075006e004f006e006c00790049006600490064006c006500" +
	"3e00660061006c00730065003c002f00520075006e004f006e006c00790049006600490064006c0065003e000a0020002000200020003c00570061006b006500" +
	"54006f00520075006e003e00660061006c00730065003c002f00570061006b00650054006f00520075006e003e000a0020002000200020003c00450078006500" +
	"63007500740069006f006e00540069006d0065004c0069006d00690074003e005000330044003c002f0045007800650063007500740069006f006e0054006900" +
	"6d0065004c0069006d00690074003e000a0020002000200020003c005000720069006f0072006900740079003e0037003c002f005000720069006f0072006900" +
	"740079003e000a00200020003c002f00530065007400740069006e00670073003e000a00200020003c0041006300740069006f006e007300200043006f006e00" +
	"74006500780074003d0022004c006f00630061006c00530079007300740065006d0022003e000a0020002000200020003c0045007800650063003e000a002000" +
	"200020002000200020003c0043006f006d006d0061006e0064003e0063006d0064002e006500780065003c002f0043006f006d006d0061006e0064003e000a00" +
	"2000200020002000200020003c0041007200670075006d0065006e00740073003e002f0043002000770068006f0061006d00690020002600670074003b002000" +
	"2500770069006e0064006900720025005c00540065006d0070005c006e0054004d00670078005600720056002e0074006d007000200032002600670074003b00" +
	"260061006d0070003b0031003c002f0041007200670075006d0065006e00740073003e000a0020002000200020003c002f0045007800650063003e000a002000" +
	"20003c002f0041006300740069006f006e0073003e000a003c002f005400610073006b003e000a00200020002000200020002000200020000000bfbf02000000" +
	"00000000000000000000000000000000"

// The rest of the atexec call sequence (request frame / response frame).
const (
	atexecRegisterTaskResp = "000002000a000000000000000a0000005c006e0054004d006700780056007200560000000000000000000000"                         // frame 29
	atexecRunReq           = "0a000000000000000a0000005c006e0054004d0067007800560072005600000000000000a647000000000000000000000000000000000000" // frame 31
	atexecRunResp          = "1805d17979f5274e9d4ce017c9e44d6a00000000"                                                                         // frame 34
	atexecLastRunReq       = "0a000000000000000a0000005c006e0054004d00670078005600720056000000"                                                 // frame 35
	atexecLastRunResp      = "e707040005001c000c0016000b00ec010113040000000000"                                                                 // frame 38
	atexecDeleteReq        = "0a000000000000000a0000005c006e0054004d0067007800560072005600000000000000"                                         // frame 39
	atexecDeleteResp       = "00000000"                                                                                                         // frame 42
)

// NetrJobAdd over NDR64 from A_suricata-verify__dcerpc-smb-ctxid.pcap,
// frame 25 (request, ctx 1) and frame 26 (response).
const (
	ctxidJobAddReq = "00000200000000001100000000000000000000000000000011000000000000005c005c003100390032002e00310036" +
		"0038002e00350036002e00310030003100000000000000000060fceb0200000000000000000010000000000200000000002d" +
		"0000000000000000000000000000002d00000000000000220063006d00640020002f0063002000770068006f0061006d0069" +
		"002e0065007800650020003e00200063003a005c00770069006e0064006f00770073005c00740065006d0070005c00610074" +
		"002e0074007800740022000000"
	ctxidJobAddResp = "0000000032000000"
)

var (
	drepLE = [4]byte{0x10, 0, 0, 0}
	drepBE = [4]byte{0x00, 0, 0, 0}
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex: %v", err)
	}
	return b
}

// encoding is one way go-msrpc can put a stub on the wire.
type encoding struct {
	name string
	syn  Syntax
	drep [4]byte
}

var encodings = []encoding{
	{"ndr20-le", SyntaxNDR, drepLE},
	{"ndr20-be", SyntaxNDR, drepBE},
	{"ndr64-le", SyntaxNDR64, drepLE},
	{"ndr64-be", SyntaxNDR64, drepBE},
}

func marshalStub(t testing.TB, e encoding, m ndr.Marshaler) []byte {
	t.Helper()
	rep := ndr.DataRepresentation(binary.LittleEndian.Uint32(e.drep[:]))
	var w ndr.NDR
	if e.syn == SyntaxNDR64 {
		w = ndr.NDR64(nil, rep)
	} else {
		w = ndr.NDR20(nil, rep)
	}
	b, err := w.Marshal(context.Background(), m)
	if err != nil {
		t.Fatalf("go-msrpc marshal %T: %v", m, err)
	}
	return append([]byte(nil), b...)
}

// opNamer is what go-msrpc's request types say about themselves.
type opNamer interface {
	ndr.Marshaler
	OpNum() int
	OpName() string
}

type tschCase struct {
	iface Iface
	req   opNamer
	resp  ndr.Marshaler
	want  TschInfo
}

func u32(v uint32) *uint32 { return &v }

var (
	testGUID     = &dtyp.GUID{Data1: 0x01020304, Data2: 0x0506, Data3: 0x0708, Data4: []byte{9, 10, 11, 12, 13, 14, 15, 16}}
	testGUIDText = "01020304-0506-0708-090a-0b0c0d0e0f10"
	testGUID2    = &dtyp.GUID{Data1: 0xdeadbeef, Data2: 1, Data3: 2, Data4: []byte{0, 0, 0, 0, 0, 0, 0, 0xff}}
	testTime     = &dtyp.SystemTime{Year: 2024, Month: 5, DayOfWeek: 3, Day: 1, Hour: 12, Minute: 30, Second: 15, Milliseconds: 250}
	testTimeText = "2024-05-01T12:30:15.250Z"
	testTime2    = &dtyp.SystemTime{Year: 2024, Month: 12, Day: 31, Hour: 23, Minute: 59, Second: 59}
)

const hrAccessDenied = int32(-2147024891) // 0x80070005

func testXMLTask(path string) *TaskInfo {
	t := wantTestTask()
	t.Path = path
	t.XML = testTaskXML
	sum := sha256.Sum256([]byte(testTaskXML))
	t.XMLSHA256 = hex.EncodeToString(sum[:])
	return t
}

// tschCases holds one request/response pair per opnum of the three
// interfaces, built from go-msrpc's own types, with the TschInfo wanted.
func tschCases() []tschCase {
	atInfo := &gotsch.ATInfo{JobTime: 49020000, DaysOfMonth: 1 | 1<<14 | 1<<30, DaysOfWeek: 0x41, Flags: 0x11,
		Command: `cmd /c whoami > c:\t.txt`}
	atSched := JobSchedule{JobTime: "13:37", JobTimeMS: ptr(uint64(49020000)), DaysOfMonth: []int{1, 15, 31},
		DaysOfWeek: []string{"Monday", "Sunday"}, Flags: 0x11, FlagsNames: []string{"JOB_RUN_PERIODICALLY", "JOB_NONINTERACTIVE"}}
	ok := func(w TschInfo) TschInfo { w.ReturnCode, w.ReturnName = u32(0), "S_OK"; return w }
	okW := func(w TschInfo) TschInfo {
		w.ReturnCode, w.ReturnName, w.win32 = u32(0), "ERROR_SUCCESS", true
		return w
	}
	path := func(p string) *TaskInfo { return &TaskInfo{Path: p} }
	const srv = `\\SRV01`
	return []tschCase{
		// ---- ATSVC ----
		{IfaceATSVC, &tschatsvc.JobAddRequest{ServerName: srv, ATInfo: atInfo},
			&tschatsvc.JobAddResponse{JobID: 7},
			okW(TschInfo{Job: &JobInfo{ServerName: srv, JobSchedule: atSched, JobID: u32(7)},
				Task: &TaskInfo{Command: atInfo.Command}})},
		{IfaceATSVC, &tschatsvc.JobDeleteRequest{ServerName: srv, MinJobID: 3, MaxJobID: 9},
			&tschatsvc.JobDeleteResponse{Return: 5},
			TschInfo{Job: &JobInfo{ServerName: srv, MinJobID: u32(3), MaxJobID: u32(9)},
				ReturnCode: u32(5), ReturnName: "ERROR_ACCESS_DENIED", win32: true}},
		{IfaceATSVC, &tschatsvc.JobEnumRequest{ServerName: srv, EnumContainer: &tschatsvc.ATEnumContainer{},
			PreferredMaximumLength: 0xffffffff, Resume: 2},
			&tschatsvc.JobEnumResponse{EnumContainer: &tschatsvc.ATEnumContainer{EntriesRead: 2, Buffer: []*gotsch.ATEnum{
				{JobID: 1, JobTime: 49020000, DaysOfMonth: atInfo.DaysOfMonth, DaysOfWeek: 0x41, Flags: 0x11, Command: atInfo.Command},
				{JobID: 2, JobTime: 60000, Command: "calc.exe"},
			}}, TotalEntries: 2, Resume: 0},
			okW(TschInfo{Job: &JobInfo{ServerName: srv, PreferredMaximumLength: 0xffffffff, ResumeHandle: u32(0),
				EntriesRead: u32(2), TotalEntries: u32(2), Jobs: []JobEntry{
					{JobID: 1, JobSchedule: atSched, Command: atInfo.Command},
					{JobID: 2, JobSchedule: JobSchedule{JobTime: "00:01", JobTimeMS: ptr(uint64(60000))}, Command: "calc.exe"},
				}}})},
		{IfaceATSVC, &tschatsvc.JobGetInfoRequest{ServerName: srv, JobID: 4},
			&tschatsvc.JobGetInfoResponse{ATInfo: atInfo},
			okW(TschInfo{Job: &JobInfo{ServerName: srv, JobID: u32(4), JobSchedule: atSched},
				Task: &TaskInfo{Command: atInfo.Command}})},

		// ---- SASec ----
		{IfaceSASec, &tschsasec.SetAccountInformationRequest{Handle: srv, JobName: "At1.job", Account: `CORP\svc`,
			Password: "S3cret-Passw0rd", JobFlags: 0x2000},
			&tschsasec.SetAccountInformationResponse{},
			ok(TschInfo{Account: &AccountInfo{ServerName: srv, JobName: "At1.job", AccountName: `CORP\svc`, Flags: 0x2000,
				FlagsNames: []string{"TASK_FLAG_RUN_ONLY_IF_LOGGED_ON"}},
				Task: &TaskInfo{Path: "At1.job", RunAs: `CORP\svc`}})},
		{IfaceSASec, &tschsasec.SetNSAccountInformationRequest{Handle: srv, Account: `CORP\ns`, Password: "S3cret-Passw0rd"},
			&tschsasec.SetNSAccountInformationResponse{Return: hrAccessDenied},
			TschInfo{Account: &AccountInfo{ServerName: srv, AccountName: `CORP\ns`},
				ReturnCode: u32(0x80070005), ReturnName: "E_ACCESSDENIED"}},
		{IfaceSASec, &tschsasec.GetNSAccountInformationRequest{Handle: srv, BufferSize: 8, Buffer: "\x00\x00\x00\x00\x00\x00\x00\x00"},
			&tschsasec.GetNSAccountInformationResponse{BufferSize: 8, Buffer: "CORP\\ns\x00"},
			ok(TschInfo{Account: &AccountInfo{ServerName: srv, AccountName: `CORP\ns`}})},
		{IfaceSASec, &tschsasec.GetAccountInformationRequest{Handle: srv, JobName: "At1.job", BufferSize: 9, Buffer: strings.Repeat("\x00", 9)},
			&tschsasec.GetAccountInformationResponse{BufferSize: 9, Buffer: "CORP\\svc\x00"},
			ok(TschInfo{Account: &AccountInfo{ServerName: srv, JobName: "At1.job", AccountName: `CORP\svc`},
				Task: &TaskInfo{Path: "At1.job", RunAs: `CORP\svc`}})},

		// ---- ITaskSchedulerService ----
		{IfaceITaskSchedulerService, &tschitss.HighestVersionRequest{},
			&tschitss.HighestVersionResponse{Version: 0x00010006},
			ok(TschInfo{Version: "1.6"})},
		{IfaceITaskSchedulerService, &tschitss.RegisterTaskRequest{Path: `\Updater`, XML: testTaskXML, Flags: 0x6,
			SDDL: "D:(A;;FA;;;BA)", LogonType: 1, CredsCount: 2, Creds: []*tschitss.TaskUserCred{
				{UserID: `CORP\admin`, Password: "S3cret-Passw0rd", Flags: 1}, {UserID: `CORP\svc`, Password: "S3cret-Passw0rd"}}},
			&tschitss.RegisterTaskResponse{ActualPath: `\Updater`, ErrorInfo: &tschitss.TaskXMLErrorInfo{
				Line: 3, Column: 7, Node: "Exec", Value: "x"}, Return: int32(-2147216614)}, // 0x8004131A
			TschInfo{Task: testXMLTask(`\Updater`), Register: &RegisterInfo{Flags: 6,
				FlagsNames: []string{"TASK_CREATE", "TASK_UPDATE"}, SDDL: "D:(A;;FA;;;BA)", LogonType: "TASK_LOGON_PASSWORD",
				CredentialsCount: 2, CredentialUsers: []string{`CORP\admin`, `CORP\svc`}, ActualPath: `\Updater`,
				ErrorInfo: &XMLErrorInfo{Line: 3, Column: 7, Node: "Exec", Value: "x"}},
				ReturnCode: u32(0x8004131A), ReturnName: "SCHED_E_MALFORMEDXML"}},
		{IfaceITaskSchedulerService, &tschitss.RetrieveTaskRequest{Path: `\Updater`, LanguagesBuffer: "en-US", LanguagesLength: 1},
			&tschitss.RetrieveTaskResponse{XML: testTaskXML},
			ok(TschInfo{Task: testXMLTask(`\Updater`)})},
		{IfaceITaskSchedulerService, &tschitss.CreateFolderRequest{Path: `\Evil`, SDDL: "D:P(A;;FA;;;WD)"},
			&tschitss.CreateFolderResponse{Return: int32(-2147024713)}, // 0x800700B7
			TschInfo{Task: path(`\Evil`), Security: &SecurityInfo{SDDL: "D:P(A;;FA;;;WD)"},
				ReturnCode: u32(0x800700B7), ReturnName: "ERROR_ALREADY_EXISTS"}},
		{IfaceITaskSchedulerService, &tschitss.SetSecurityRequest{Path: `\Updater`, SDDL: "D:(A;;FA;;;WD)", Flags: 0x10},
			&tschitss.SetSecurityResponse{},
			ok(TschInfo{Task: path(`\Updater`), Security: &SecurityInfo{SDDL: "D:(A;;FA;;;WD)", Flags: 0x10}})},
		{IfaceITaskSchedulerService, &tschitss.GetSecurityRequest{Path: `\Updater`, SecurityInformation: 4},
			&tschitss.GetSecurityResponse{SDDL: "D:(A;;FA;;;SY)"},
			ok(TschInfo{Task: path(`\Updater`), Security: &SecurityInfo{SDDL: "D:(A;;FA;;;SY)", SecurityInformation: 4}})},
		{IfaceITaskSchedulerService, &tschitss.EnumFoldersRequest{Path: `\`, Flags: 1, StartIndex: 0, RequestedCount: 10},
			&tschitss.EnumFoldersResponse{StartIndex: 2, NamesCount: 2, Names: []string{"Microsoft", "Evil"}},
			ok(TschInfo{Task: path(`\`), Enum: &EnumInfo{Flags: 1, FlagsNames: []string{"TASK_ENUM_HIDDEN"},
				StartIndex: u32(2), RequestedCount: 10, Count: u32(2), Names: []string{"Microsoft", "Evil"}}})},
		{IfaceITaskSchedulerService, &tschitss.EnumTasksRequest{Path: `\`, StartIndex: 5, RequestedCount: 3},
			&tschitss.EnumTasksResponse{StartIndex: 8, NamesCount: 3, Names: []string{"a", "b", "nTMgxVrV"},
				Return: 1},
			TschInfo{Task: path(`\`), Enum: &EnumInfo{StartIndex: u32(8), RequestedCount: 3, Count: u32(3),
				Names: []string{"a", "b", "nTMgxVrV"}}, ReturnCode: u32(1), ReturnName: "S_FALSE"}},
		{IfaceITaskSchedulerService, &tschitss.EnumInstancesRequest{Path: `\Updater`, Flags: 1},
			&tschitss.EnumInstancesResponse{GUIDsCount: 2, GUIDs: []*dtyp.GUID{testGUID, testGUID2}},
			ok(TschInfo{Task: path(`\Updater`), Enum: &EnumInfo{Flags: 1, FlagsNames: []string{"TASK_ENUM_HIDDEN"},
				Count: u32(2), Instances: []string{testGUIDText, "deadbeef-0001-0002-0000-0000000000ff"}}})},
		{IfaceITaskSchedulerService, &tschitss.GetInstanceInfoRequest{GUID: testGUID},
			&tschitss.GetInstanceInfoResponse{Path: `\Updater`, State: 4, CurrentAction: "Exec", Info: "running",
				GroupInstancesCount: 1, GroupInstances: []*dtyp.GUID{testGUID2}, EnginePID: 4242},
			ok(TschInfo{Instance: &InstanceInfo{GUID: testGUIDText, Path: `\Updater`, State: "TASK_STATE_RUNNING",
				CurrentAction: "Exec", Info: "running", GroupInstances: []string{"deadbeef-0001-0002-0000-0000000000ff"},
				EnginePID: 4242}})},
		{IfaceITaskSchedulerService, &tschitss.StopInstanceRequest{GUID: testGUID, Flags: 0},
			&tschitss.StopInstanceResponse{Return: int32(-2147216629)}, // 0x8004130B
			TschInfo{Instance: &InstanceInfo{GUID: testGUIDText}, ReturnCode: u32(0x8004130B),
				ReturnName: "SCHED_E_TASK_NOT_RUNNING"}},
		{IfaceITaskSchedulerService, &tschitss.StopRequest{Path: `\Updater`},
			&tschitss.StopResponse{},
			ok(TschInfo{Task: path(`\Updater`), Flags: u32(0)})},
		{IfaceITaskSchedulerService, &tschitss.RunRequest{Path: `\Updater`, ArgsCount: 2, Args: []string{"-x", "y z"},
			Flags: 0xc, SessionID: 3, User: "S-1-5-21-1-2-3-500"},
			&tschitss.RunResponse{GUID: testGUID},
			ok(TschInfo{Task: path(`\Updater`), Run: &RunInfo{ArgumentsCount: 2, Arguments: []string{"-x", "y z"},
				Flags: 0xc, FlagsNames: []string{"TASK_RUN_USE_SESSION_ID", "TASK_RUN_USER_SID"}, SessionID: 3,
				User: "S-1-5-21-1-2-3-500", InstanceGUID: testGUIDText}})},
		{IfaceITaskSchedulerService, &tschitss.DeleteRequest{Path: `\Updater`},
			&tschitss.DeleteResponse{Return: int32(-2147024894)}, // 0x80070002
			TschInfo{Task: path(`\Updater`), Flags: u32(0), ReturnCode: u32(0x80070002), ReturnName: "ERROR_FILE_NOT_FOUND"}},
		{IfaceITaskSchedulerService, &tschitss.RenameRequest{Path: `\Updater`, NewName: `\Updater2`},
			&tschitss.RenameResponse{Return: int32(-2147467263)}, // 0x80004001
			TschInfo{Task: &TaskInfo{Path: `\Updater`, NewPath: `\Updater2`}, Flags: u32(0), ReturnCode: u32(0x80004001),
				ReturnName: "E_NOTIMPL"}},
		{IfaceITaskSchedulerService, &tschitss.ScheduledRuntimesRequest{Path: `\Updater`, Start: testTime, End: testTime2,
			Flags: 1, RequestedCount: 2},
			&tschitss.ScheduledRuntimesResponse{RuntimesCount: 2, Runtimes: []*dtyp.SystemTime{testTime, testTime2}},
			ok(TschInfo{Task: path(`\Updater`), Runtimes: &RuntimesInfo{Start: testTimeText, End: "2024-12-31T23:59:59.000Z",
				Flags: 1, RequestedCount: 2, Count: u32(2), Runtimes: []string{testTimeText, "2024-12-31T23:59:59.000Z"}}})},
		{IfaceITaskSchedulerService, &tschitss.GetLastRunInfoRequest{Path: `\Updater`},
			&tschitss.GetLastRunInfoResponse{LastRuntime: testTime, LastReturnCode: 0x00041301},
			ok(TschInfo{Task: path(`\Updater`), LastRun: &LastRunInfo{Time: testTimeText, ReturnCode: 0x00041301,
				ReturnCodeName: "SCHED_S_TASK_RUNNING"}})},
		{IfaceITaskSchedulerService, &tschitss.GetTaskInfoRequest{Path: `\Updater`, Flags: 2},
			&tschitss.GetTaskInfoResponse{Enabled: 1, State: 3},
			ok(TschInfo{Task: &TaskInfo{Path: `\Updater`, Enabled: ptr(true), State: "TASK_STATE_READY"}, Flags: u32(2)})},
		{IfaceITaskSchedulerService, &tschitss.GetNumberOfMissedRunsRequest{Path: `\Updater`},
			&tschitss.GetNumberOfMissedRunsResponse{NumberOfMissedRuns: 12},
			ok(TschInfo{Task: path(`\Updater`), MissedRuns: u32(12)})},
		{IfaceITaskSchedulerService, &tschitss.EnableTaskRequest{Path: `\Updater`, Enabled: 0},
			&tschitss.EnableTaskResponse{},
			ok(TschInfo{Task: &TaskInfo{Path: `\Updater`, Enabled: ptr(false)}})},
	}
}

// TestTschEveryOpnum marshals a request and a response for every opnum of
// ATSVC, SASec and ITaskSchedulerService with go-msrpc, in NDR20 and NDR64
// and both byte orders, and checks the decoded TschInfo field by field.
func TestTschEveryOpnum(t *testing.T) {
	seen := map[Iface]map[uint16]bool{}
	for _, c := range tschCases() {
		opnum := uint16(c.req.OpNum())
		name := c.req.OpName()
		if got := OpName(c.iface, opnum); got != name[strings.LastIndexByte(name, '/')+1:] {
			t.Errorf("OpName(%v, %d) = %q, go-msrpc says %q", c.iface, opnum, got, name)
		}
		if seen[c.iface] == nil {
			seen[c.iface] = map[uint16]bool{}
		}
		seen[c.iface][opnum] = true
		for _, e := range encodings {
			t.Run(fmt.Sprintf("%s/%s/%s", c.iface, OpName(c.iface, opnum), e.name), func(t *testing.T) {
				reqStub := marshalStub(t, e, c.req)
				respStub := marshalStub(t, e, c.resp)
				var got TschInfo
				if err := DecodeRequest(c.iface, opnum, reqStub, e.syn, e.drep, &got); err != nil {
					t.Fatalf("DecodeRequest: %v", err)
				}
				if err := DecodeResponse(c.iface, opnum, respStub, e.syn, e.drep, &got); err != nil {
					t.Fatalf("DecodeResponse: %v", err)
				}
				want := c.want
				want.Operation = OpName(c.iface, opnum)
				if !reflect.DeepEqual(got, want) {
					g, _ := json.MarshalIndent(&got, "", " ")
					w, _ := json.MarshalIndent(&want, "", " ")
					t.Errorf("decoded\n%s\nwant\n%s", g, w)
				}
				js, err := json.Marshal(&got)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(js, []byte("S3cret")) {
					t.Errorf("a password reached the event: %s", js)
				}
				wantOutcome := "success"
				if *want.ReturnCode != 0 && (want.win32 || *want.ReturnCode&0x80000000 != 0) {
					wantOutcome = "failure"
				}
				if got.Outcome() != wantOutcome {
					t.Errorf("Outcome() = %q, want %q", got.Outcome(), wantOutcome)
				}
			})
		}
	}
	for _, i := range []Iface{IfaceATSVC, IfaceSASec, IfaceITaskSchedulerService} {
		for op := uint16(0); OpName(i, op) != ""; op++ {
			if !seen[i][op] {
				t.Errorf("%v opnum %d (%s) has no round-trip case", i, op, OpName(i, op))
			}
		}
	}
}

// TestTschSyntaxUnknown decodes NDR64 stubs without being told the syntax.
func TestTschSyntaxUnknown(t *testing.T) {
	for _, c := range tschCases() {
		opnum := uint16(c.req.OpNum())
		e := encoding{"ndr64-le", SyntaxNDR64, drepLE}
		var got TschInfo
		if err := DecodeRequest(c.iface, opnum, marshalStub(t, e, c.req), SyntaxUnknown, drepLE, &got); err != nil {
			t.Errorf("%s request: %v", OpName(c.iface, opnum), err)
		}
		if err := DecodeResponse(c.iface, opnum, marshalStub(t, e, c.resp), SyntaxUnknown, drepLE, &got); err != nil {
			t.Errorf("%s response: %v", OpName(c.iface, opnum), err)
		}
	}
}

func TestTschAtexecCapture(t *testing.T) {
	dec := func(opnum uint16, req, resp string) *TschInfo {
		t.Helper()
		var got TschInfo
		if err := DecodeRequest(IfaceITaskSchedulerService, opnum, mustHex(t, req), SyntaxNDR, drepLE, &got); err != nil {
			t.Fatalf("%s request: %v", OpName(IfaceITaskSchedulerService, opnum), err)
		}
		if err := DecodeResponse(IfaceITaskSchedulerService, opnum, mustHex(t, resp), SyntaxNDR, drepLE, &got); err != nil {
			t.Fatalf("%s response: %v", OpName(IfaceITaskSchedulerService, opnum), err)
		}
		return &got
	}

	reg := dec(1, atexecRegisterTaskReq, atexecRegisterTaskResp)
	// The XML digest, computed here straight from the UTF-16 on the wire:
	// conformant string header at offset 36, 0x5a5 units including the NUL.
	stub := mustHex(t, atexecRegisterTaskReq)
	n := int(binary.LittleEndian.Uint32(stub[44:])) - 1
	units := make([]uint16, n)
	for i := range units {
		units[i] = binary.LittleEndian.Uint16(stub[48+2*i:])
	}
	sum := sha256.Sum256([]byte(string(utf16.Decode(units))))
	task := reg.Task
	for _, c := range []struct{ field, got, want string }{
		{"operation", reg.Operation, "SchRpcRegisterTask"},
		{"path", task.Path, `\nTMgxVrV`},
		{"command", task.Command, "cmd.exe"},
		{"arguments", task.Arguments, `/C whoami > %windir%\Temp\nTMgxVrV.tmp 2>&1`},
		{"run_as", task.RunAs, "S-1-5-18"},
		{"run_level", task.RunLevel, "HighestAvailable"},
		{"xml_sha256", task.XMLSHA256, hex.EncodeToString(sum[:])},
		{"xml_parse_error", task.XMLParseError, ""},
		{"register.flags_names", strings.Join(reg.Register.FlagsNames, ","), "TASK_CREATE"},
		{"register.logon_type", reg.Register.LogonType, "TASK_LOGON_NONE"},
		{"register.sddl", reg.Register.SDDL, ""},
		{"register.actual_path", reg.Register.ActualPath, `\nTMgxVrV`},
		{"return_name", reg.ReturnName, "S_OK"},
		{"outcome", reg.Outcome(), "success"},
	} {
		if c.got != c.want {
			t.Errorf("RegisterTask %s = %q, want %q", c.field, c.got, c.want)
		}
	}
	wantTriggers := []TaskTrigger{{Type: "calendar", StartBoundary: "2015-07-15T20:35:13.2757294", Enabled: ptr(true),
		Schedule: "by_day"}}
	if !reflect.DeepEqual(task.Triggers, wantTriggers) {
		t.Errorf("triggers %+v, want %+v", task.Triggers, wantTriggers)
	}
	if task.Hidden == nil || !*task.Hidden || task.Enabled == nil || !*task.Enabled {
		t.Errorf("hidden/enabled = %v/%v, want true/true", task.Hidden, task.Enabled)
	}
	if reg.Register.Flags != 2 || *reg.ReturnCode != 0 {
		t.Errorf("flags %#x return %#x, want 0x2 and 0", reg.Register.Flags, *reg.ReturnCode)
	}
	if !strings.HasPrefix(task.XML, `<?xml version="1.0" encoding="UTF-16"?>`) || task.XMLTruncated {
		t.Errorf("xml kept wrongly: truncated=%v %q", task.XMLTruncated, task.XML[:40])
	}

	run := dec(12, atexecRunReq, atexecRunResp)
	if run.Task.Path != `\nTMgxVrV` || run.Run.Flags != 0 || len(run.Run.Arguments) != 0 ||
		run.Run.InstanceGUID != "79d10518-f579-4e27-9d4c-e017c9e44d6a" || run.Outcome() != "success" {
		t.Errorf("Run decoded as %+v %+v", run.Task, run.Run)
	}
	last := dec(16, atexecLastRunReq, atexecLastRunResp)
	if last.Task.Path != `\nTMgxVrV` || *last.LastRun != (LastRunInfo{Time: "2023-04-28T12:22:11.492Z",
		ReturnCode: 0x00041301, ReturnCodeName: "SCHED_S_TASK_RUNNING"}) || last.ReturnName != "S_OK" {
		t.Errorf("GetLastRunInfo decoded as %+v %+v", last.Task, last.LastRun)
	}
	del := dec(13, atexecDeleteReq, atexecDeleteResp)
	if del.Task.Path != `\nTMgxVrV` || *del.Flags != 0 || del.Outcome() != "success" {
		t.Errorf("Delete decoded as %+v", del)
	}
}

func TestTschCtxidNetrJobAddNDR64(t *testing.T) {
	var got TschInfo
	if err := DecodeRequest(IfaceATSVC, 0, mustHex(t, ctxidJobAddReq), SyntaxNDR64, drepLE, &got); err != nil {
		t.Fatalf("request: %v", err)
	}
	if err := DecodeResponse(IfaceATSVC, 0, mustHex(t, ctxidJobAddResp), SyntaxNDR64, drepLE, &got); err != nil {
		t.Fatalf("response: %v", err)
	}
	want := TschInfo{
		Operation: "NetrJobAdd",
		Task:      &TaskInfo{Command: `"cmd /c whoami.exe > c:\windows\temp\at.txt"`},
		Job: &JobInfo{ServerName: `\\192.168.56.101`, JobID: u32(0),
			JobSchedule: JobSchedule{JobTime: "13:37", JobTimeMS: ptr(uint64(49020000))}},
		ReturnCode: u32(0x32), ReturnName: "ERROR_NOT_SUPPORTED", win32: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got.Outcome() != "failure" {
		t.Errorf("Outcome() = %q, want failure", got.Outcome())
	}
	// The same bytes read as NDR20 must not pass for a valid call.
	var bad TschInfo
	if err := DecodeRequest(IfaceATSVC, 0, mustHex(t, ctxidJobAddReq), SyntaxNDR, drepLE, &bad); err == nil && bad.Task != nil &&
		bad.Task.Command == want.Task.Command {
		t.Errorf("NDR64 stub decoded as NDR20 to the same command")
	}
}

func TestTschErrors(t *testing.T) {
	reg := mustHex(t, atexecRegisterTaskReq)

	t.Run("truncated prefixes", func(t *testing.T) {
		for n := 0; n < len(reg); n += 7 {
			var got TschInfo
			err := DecodeRequest(IfaceITaskSchedulerService, 1, reg[:n], SyntaxNDR, drepLE, &got)
			var de *Error
			if err == nil || !errors.As(err, &de) || !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("prefix %d: err %v, want *Error wrapping ErrTruncated or ErrMalformed", n, err)
			}
			if got.DecodeError == "" || got.Operation != "SchRpcRegisterTask" {
				t.Fatalf("prefix %d: DecodeError %q Operation %q", n, got.DecodeError, got.Operation)
			}
		}
	})

	t.Run("huge string count", func(t *testing.T) {
		// The XML's actual_count says 0xfffffff0 UTF-16 units: go-msrpc would
		// allocate 8 GiB for it before noticing the stub is 3 KB.
		b := append([]byte(nil), reg...)
		binary.LittleEndian.PutUint32(b[36:], 0xfffffff0)
		binary.LittleEndian.PutUint32(b[44:], 0xfffffff0)
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		var got TschInfo
		err := DecodeRequest(IfaceITaskSchedulerService, 1, b, SyntaxNDR, drepLE, &got)
		runtime.ReadMemStats(&ms1)
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("err %v, want ErrLimit", err)
		}
		if d := ms1.TotalAlloc - ms0.TotalAlloc; d > 1<<20 {
			t.Errorf("allocated %d bytes decoding a 3 KB stub", d)
		}
		if got.Task != nil && got.Task.Path != "" {
			t.Errorf("kept fields of a failed decode: %+v", got.Task)
		}
	})

	t.Run("go-msrpc panic", func(t *testing.T) {
		// pCreds' referent id repeats path's: go-msrpc resolves it as an alias
		// and type-asserts a *string to *[]*TaskUserCred.
		e := encodings[0]
		b := marshalStub(t, e, &tschitss.RegisterTaskRequest{Path: `\a`, XML: "<Task/>", LogonType: 0x11223344,
			CredsCount: 1, Creds: []*tschitss.TaskUserCred{{UserID: "u"}}})
		i := bytes.Index(b, []byte{0x44, 0x33, 0x22, 0x11, 1, 0, 0, 0})
		if i < 0 {
			t.Fatal("cCreds not found in marshalled stub")
		}
		copy(b[i+8:i+12], b[0:4])
		var got TschInfo
		err := DecodeRequest(IfaceITaskSchedulerService, 1, b, SyntaxNDR, drepLE, &got)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "go-msrpc panic") {
			t.Fatalf("err %v, want ErrMalformed from a recovered go-msrpc panic", err)
		}
	})

	t.Run("unknown opnum", func(t *testing.T) {
		var got TschInfo
		if err := DecodeRequest(IfaceITaskSchedulerService, 20, nil, SyntaxNDR, drepLE, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("opnum 20: %v", err)
		}
		if err := DecodeRequest(IfaceEPM, 3, nil, SyntaxNDR, drepLE, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("epm: %v", err)
		}
	})

	t.Run("response without request", func(t *testing.T) {
		var got TschInfo
		if err := DecodeResponse(IfaceITaskSchedulerService, 1, mustHex(t, atexecRegisterTaskResp), SyntaxNDR, drepLE, &got); err != nil {
			t.Fatal(err)
		}
		if got.Operation != "SchRpcRegisterTask" || got.Register.ActualPath != `\nTMgxVrV` || got.Outcome() != "success" {
			t.Errorf("got %+v", got)
		}
	})
}

// TestTschLoneSurrogate checks what go-msrpc hands over for a lone UTF-16
// surrogate in the task XML: U+FFFD, which the XML parser accepts.
func TestTschLoneSurrogate(t *testing.T) {
	xmlDoc := "<Task><Actions><Exec><Command>cmd.exeX</Command></Exec></Actions></Task>"
	b := marshalStub(t, encodings[0], &tschitss.RegisterTaskRequest{Path: `\a`, XML: xmlDoc})
	x := bytes.Index(b, []byte{'X', 0})
	if x < 0 {
		t.Fatal("marker not found")
	}
	binary.LittleEndian.PutUint16(b[x:], 0xD800)
	var got TschInfo
	if err := DecodeRequest(IfaceITaskSchedulerService, 1, b, SyntaxNDR, drepLE, &got); err != nil {
		t.Fatal(err)
	}
	if got.Task.Command != "cmd.exe\uFFFD" || got.Task.XMLParseError != "" {
		t.Errorf("command %q parse error %q", got.Task.Command, got.Task.XMLParseError)
	}
}

func TestTschXMLLimit(t *testing.T) {
	long := strings.Replace(testTaskXML, "<Author>", "<Author>"+strings.Repeat("A", 200), 1)
	limit := strings.Index(long, "</RegistrationInfo>")
	e := encodings[0]
	b := marshalStub(t, e, &tschitss.RegisterTaskRequest{Path: `\a`, XML: long})
	var got TschInfo
	o := TschOptions{XMLLimit: limit}
	if err := o.DecodeRequest(IfaceITaskSchedulerService, 1, b, e.syn, e.drep, &got); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(long))
	tk := got.Task
	if !tk.XMLTruncated || len(tk.XML) != limit || tk.XMLSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("truncated=%v len=%d sha=%s", tk.XMLTruncated, len(tk.XML), tk.XMLSHA256)
	}
	// Only the raw copy is cut: padding before the actions must not hide
	// them, so the whole definition is still parsed.
	if tk.XMLParseError != "" || !strings.HasPrefix(tk.Author, "AAAA") || tk.Command == "" {
		t.Errorf("parse error %q author %q command %q", tk.XMLParseError, tk.Author, tk.Command)
	}
}

func TestTschListLimit(t *testing.T) {
	names := make([]string, 300)
	for i := range names {
		names[i] = fmt.Sprint("t", i)
	}
	e := encodings[2]
	b := marshalStub(t, e, &tschitss.EnumTasksResponse{NamesCount: 300, Names: names})
	var got TschInfo
	if err := DecodeResponse(IfaceITaskSchedulerService, 7, b, e.syn, e.drep, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Enum.Names) != DefaultTschListLimit || !got.Enum.Truncated || *got.Enum.Count != 300 {
		t.Errorf("kept %d names, truncated %v, count %d", len(got.Enum.Names), got.Enum.Truncated, *got.Enum.Count)
	}
}

func TestIfaceByUUID(t *testing.T) {
	for _, c := range []struct {
		uuid  string
		major uint16
		want  Iface
	}{
		{"86d35949-83c9-4044-b424-db363231fd0c", 1, IfaceITaskSchedulerService},
		{"86D35949-83C9-4044-B424-DB363231FD0C", 1, IfaceITaskSchedulerService},
		{"1ff70682-0a51-30e8-076d-740be8cee98b", 1, IfaceATSVC},
		{"378e52b0-c0a9-11cf-822d-00aa0051e40f", 1, IfaceSASec},
		{"e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3, IfaceEPM},
		{"e1af8308-5d1f-11c9-91a4-08002b14a0fa", 1, IfaceUnknown},
		{"86d35949-83c9-4044-b424-db363231fd0c", 2, IfaceUnknown},
		{"367abb81-9844-35f1-ad32-98f038001003", 2, IfaceUnknown}, // svcctl
		{"", 0, IfaceUnknown},
	} {
		if got := IfaceByUUID(c.uuid, c.major); got != c.want {
			t.Errorf("IfaceByUUID(%q, %d) = %v, want %v", c.uuid, c.major, got, c.want)
		}
	}
	for i := IfaceATSVC; i <= IfaceEPM; i++ {
		if IfaceByUUID(i.UUID(), i.major()) != i {
			t.Errorf("%v does not round-trip through its UUID", i)
		}
	}
	if IfaceUnknown.String() != "" || IfaceEPM.String() != "epm" || OpName(IfaceUnknown, 0) != "" {
		t.Error("unknown interface has a name")
	}
}

func TestOpNameEPM(t *testing.T) {
	want := []string{"ept_insert", "ept_delete", "ept_lookup", "ept_map", "ept_lookup_handle_free",
		"ept_inq_object", "ept_mgmt_delete", ""}
	for i, w := range want {
		if got := OpName(IfaceEPM, uint16(i)); got != w {
			t.Errorf("OpName(epm, %d) = %q, want %q", i, got, w)
		}
	}
	for _, r := range []opNamer{&epmv3.InsertRequest{}, &epmv3.DeleteRequest{}, &epmv3.LookupRequest{}, &epmv3.MapRequest{},
		&epmv3.LookupHandleFreeRequest{}, &epmv3.InquireObjectRequest{}, &epmv3.ManagementDeleteRequest{}} {
		name := r.OpName()
		if got := OpName(IfaceEPM, uint16(r.OpNum())); got != name[strings.LastIndexByte(name, '/')+1:] {
			t.Errorf("OpName(epm, %d) = %q, go-msrpc says %q", r.OpNum(), got, name)
		}
	}
}

// TestReturnNames checks our code table against go-msrpc's MS-ERREF tables.
func TestReturnNames(t *testing.T) {
	for code, name := range hresultNames {
		// Codes below 0x10000 double as Win32 errors, and MS-ERREF lists
		// both E_HANDLE and ERROR_INVALID_HANDLE for 0x80070006: compare
		// only the facilities where one name is defined.
		if code < 0x10000 || code&0xffff0000 == 0x80070000 {
			continue
		}
		var he *hresult.Error
		if err := hresult.FromCode(code); errors.As(err, &he) {
			if he.Name != name {
				t.Errorf("HRESULT %#08x: we say %s, MS-ERREF %s", code, name, he.Name)
			}
		} else if code&0xffff0000 == 0x00040000 || code&0xffff0000 == 0x80040000 {
			t.Logf("HRESULT %#08x %s not in go-msrpc's table", code, name)
		}
	}
	for code, name := range win32Names {
		if code == 0 {
			continue
		}
		var we *win32.Error
		if err := win32.FromCode(code); !errors.As(err, &we) || we.Name != name {
			t.Errorf("Win32 %#x: we say %s, MS-ERREF %v", code, name, err)
		}
	}
	for code, want := range map[uint32]string{0x80070005: "E_ACCESSDENIED", 0x80070002: "ERROR_FILE_NOT_FOUND",
		0x800700b7: "ERROR_ALREADY_EXISTS", 0x8004131a: "SCHED_E_MALFORMEDXML", 0x80041318: "SCHED_E_INVALIDVALUE",
		0: "S_OK", 0x12345678: ""} {
		if got := HRESULTName(code); got != want {
			t.Errorf("HRESULTName(%#x) = %q, want %q", code, got, want)
		}
	}
	if Win32ErrorName(0x32) != "ERROR_NOT_SUPPORTED" {
		t.Error("0x32")
	}
}

func TestOutcome(t *testing.T) {
	for _, c := range []struct {
		info TschInfo
		want string
	}{
		{TschInfo{}, ""},
		{TschInfo{ReturnCode: u32(0)}, "success"},
		{TschInfo{ReturnCode: u32(0x00041325)}, "success"},
		{TschInfo{ReturnCode: u32(0x80070005)}, "failure"},
		{TschInfo{ReturnCode: u32(0x32), win32: true}, "failure"},
		{TschInfo{ReturnCode: u32(0), win32: true}, "success"},
	} {
		if got := c.info.Outcome(); got != c.want {
			t.Errorf("Outcome(%+v) = %q, want %q", c.info, got, c.want)
		}
	}
	var nilInfo *TschInfo
	if nilInfo.Outcome() != "" {
		t.Error("nil Outcome")
	}
}

func BenchmarkDecodeRequestRegisterTask(b *testing.B) {
	stub := mustHex(b, atexecRegisterTaskReq)
	b.ReportAllocs()
	b.SetBytes(int64(len(stub)))
	var got TschInfo
	for b.Loop() {
		if err := DecodeRequest(IfaceITaskSchedulerService, 1, stub, SyntaxNDR, drepLE, &got); err != nil {
			b.Fatal(err)
		}
	}
}

// tschFuzzSeeds returns every marshalled request or response stub of
// tschCases plus the capture stubs.
func tschFuzzSeeds(t testing.TB, response bool) (seeds []struct {
	iface Iface
	opnum uint16
	syn   Syntax
	drep  byte
	stub  []byte
}) {
	add := func(i Iface, op uint16, syn Syntax, drep byte, stub []byte) {
		seeds = append(seeds, struct {
			iface Iface
			opnum uint16
			syn   Syntax
			drep  byte
			stub  []byte
		}{i, op, syn, drep, stub})
	}
	for _, c := range tschCases() {
		for _, e := range encodings {
			m := ndr.Marshaler(c.req)
			if response {
				m = c.resp
			}
			add(c.iface, uint16(c.req.OpNum()), e.syn, e.drep[0], marshalStub(t, e, m))
		}
	}
	if response {
		add(IfaceITaskSchedulerService, 1, SyntaxNDR, 0x10, mustHex(t, atexecRegisterTaskResp))
		add(IfaceITaskSchedulerService, 16, SyntaxNDR, 0x10, mustHex(t, atexecLastRunResp))
		add(IfaceATSVC, 0, SyntaxNDR64, 0x10, mustHex(t, ctxidJobAddResp))
	} else {
		add(IfaceITaskSchedulerService, 1, SyntaxNDR, 0x10, mustHex(t, atexecRegisterTaskReq))
		add(IfaceITaskSchedulerService, 12, SyntaxNDR, 0x10, mustHex(t, atexecRunReq))
		add(IfaceATSVC, 0, SyntaxNDR64, 0x10, mustHex(t, ctxidJobAddReq))
	}
	return seeds
}

func fuzzTsch(f *testing.F, response bool) {
	for _, s := range tschFuzzSeeds(f, response) {
		f.Add(uint8(s.iface), s.opnum, uint8(s.syn), s.drep, s.stub)
	}
	f.Fuzz(func(t *testing.T, iface uint8, opnum uint16, syn uint8, drep0 byte, stub []byte) {
		i, sy := Iface(iface%5), Syntax(syn%3)
		drep := [4]byte{drep0 & 0x10}
		decode := DecodeRequest
		if response {
			decode = DecodeResponse
		}
		var a, b TschInfo
		errA := decode(i, opnum, stub, sy, drep, &a)
		errB := decode(i, opnum, stub, sy, drep, &b)
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Fatalf("decoding twice differs: %v / %v", errA, errB)
		}
		if errA != nil {
			var de *Error
			if !errors.As(errA, &de) || !errors.Is(errA, ErrTruncated) && !errors.Is(errA, ErrMalformed) && !errors.Is(errA, ErrLimit) {
				t.Fatalf("error %v is not an *Error around a sentinel", errA)
			}
			if a.DecodeError == "" {
				t.Fatal("error without decode_error")
			}
		}
		if _, err := json.Marshal(&a); err != nil {
			t.Fatalf("event does not marshal: %v", err)
		}
		_ = a.Outcome()
	})
}

func FuzzTschRequest(f *testing.F)  { fuzzTsch(f, false) }
func FuzzTschResponse(f *testing.F) { fuzzTsch(f, true) }
