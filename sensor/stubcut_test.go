package sensor

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	gotsch "github.com/oiweiwei/go-msrpc/msrpc/tsch"
	tschatsvc "github.com/oiweiwei/go-msrpc/msrpc/tsch/atsvc/v1"
	tschitss "github.com/oiweiwei/go-msrpc/msrpc/tsch/itaskschedulerservice/v1"
	"github.com/oiweiwei/go-msrpc/ndr"

	"github.com/tschsensor/tschsensor/dissect"
)

// stubEncoding is one transfer syntax and byte order a stub comes in.
type stubEncoding struct {
	name string
	syn  dissect.Syntax
	drep [4]byte
}

// stubEncodings are NDR and NDR64, little- and big-endian.
func stubEncodings() []stubEncoding {
	return []stubEncoding{
		{"ndr20-le", dissect.SyntaxNDR, [4]byte{0x10}}, {"ndr20-be", dissect.SyntaxNDR, [4]byte{}},
		{"ndr64-le", dissect.SyntaxNDR64, [4]byte{0x10}}, {"ndr64-be", dissect.SyntaxNDR64, [4]byte{}},
	}
}

// marshal encodes m in e with go-msrpc, an encoder independent of the
// dissector's; the copy keeps the stub from aliasing the encoder's buffer.
func (e stubEncoding) marshal(t testing.TB, m ndr.Marshaler) []byte {
	t.Helper()
	rep := ndr.DataRepresentation(binary.LittleEndian.Uint32(e.drep[:]))
	var w ndr.NDR = ndr.NDR20(nil, rep)
	if e.syn == dissect.SyntaxNDR64 {
		w = ndr.NDR64(nil, rep)
	}
	b, err := w.Marshal(context.Background(), m)
	if err != nil {
		t.Fatalf("%s: marshal %T: %v", e.name, m, err)
	}
	return append([]byte(nil), b...)
}

// TestCompactStub: a SchRpcRegisterTask whose XML and a NetrJobAdd whose
// command are padded far past what is kept, cut to a head and a tail, join
// back into stubs that decode with every field around the long string, in
// NDR and NDR64, both byte orders (stubs made by go-msrpc).
func TestCompactStub(t *testing.T) {
	pad := strings.Repeat("A", 300000)
	xml := `<?xml version="1.0" encoding="UTF-16"?><Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task"><!--` + pad +
		`--><Actions Context="Author"><Exec><Command>cmd.exe</Command><Arguments>/c whoami</Arguments></Exec></Actions></Task>`
	reg := &tschitss.RegisterTaskRequest{Path: `\Updater`, XML: xml, Flags: 0x6, SDDL: "D:(A;;FA;;;BA)", LogonType: 1, CredsCount: 1,
		Creds: []*tschitss.TaskUserCred{{UserID: `CORP\admin`, Password: "S3cret-Passw0rd", Flags: 1}}}
	job := &tschatsvc.JobAddRequest{ServerName: `\\SRV01`, ATInfo: &gotsch.ATInfo{JobTime: 49020000, DaysOfWeek: 0x41,
		Command: "cmd /c " + pad + " & whoami"}}
	for _, enc := range stubEncodings() {
		marshal := func(m ndr.Marshaler) []byte { return enc.marshal(t, m) }
		cut := func(stub []byte) ([]byte, []byte) { return stub[:100000], stub[len(stub)-stubTail:] }

		stub := marshal(reg)
		head, tail := cut(stub)
		joined := compactStub(dissect.IfaceITaskSchedulerService, 1, enc.syn, enc.drep, head, tail, len(stub), nil)
		var info dissect.TschInfo
		if joined == nil {
			t.Fatalf("%s: SchRpcRegisterTask not joined", enc.name)
		}
		if err := (dissect.TschOptions{}).DecodeRequest(dissect.IfaceITaskSchedulerService, 1, joined, enc.syn, enc.drep, &info); err != nil {
			t.Fatalf("%s: joined SchRpcRegisterTask: %v", enc.name, err)
		}
		if info.Task == nil || info.Task.Path != `\Updater` || info.Task.Command != "cmd.exe" || info.Register == nil ||
			info.Register.Flags != 6 || info.Register.LogonType != "TASK_LOGON_PASSWORD" || len(info.Register.CredentialUsers) != 1 {
			t.Errorf("%s: SchRpcRegisterTask decoded as task %+v register %+v", enc.name, info.Task, info.Register)
		}

		stub = marshal(job)
		head, tail = cut(stub)
		joined = compactStub(dissect.IfaceATSVC, 0, enc.syn, enc.drep, head, tail, len(stub), nil)
		info = dissect.TschInfo{}
		if joined == nil {
			t.Fatalf("%s: NetrJobAdd not joined", enc.name)
		}
		if err := (dissect.TschOptions{}).DecodeRequest(dissect.IfaceATSVC, 0, joined, enc.syn, enc.drep, &info); err != nil {
			t.Fatalf("%s: joined NetrJobAdd: %v", enc.name, err)
		}
		if info.Job == nil || info.Job.ServerName != `\\SRV01` || info.Job.JobTime != "13:37" || info.Task == nil ||
			!strings.HasPrefix(info.Task.Command, "cmd /c AAA") || !strings.HasSuffix(info.Task.Command, "AAA & whoami") {
			t.Errorf("%s: NetrJobAdd decoded as job %+v", enc.name, info.Job)
		}
	}
}
