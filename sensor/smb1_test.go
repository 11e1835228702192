package sensor

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// sharedPcaps is the read-only capture corpus beside the repository.
const sharedPcaps = "../../shared/pcaps"

func sharedPcap(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(sharedPcaps, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared capture corpus not available (%s): %v", sharedPcaps, err)
	}
	return p
}

// collect is a Recorder keeping every record.
type collect struct {
	calls []*detect.Call
	files []*detect.FileOp
}

func (c *collect) Call(x *detect.Call)   { c.calls = append(c.calls, x) }
func (c *collect) File(x *detect.FileOp) { c.files = append(c.files, x) }

// replayWorker runs a capture through one Worker and returns its records.
func replayWorker(t *testing.T, path string) (*collect, *Stats) {
	t.Helper()
	rec := &collect{}
	w := NewWorker(Options{}, rec, nil)
	w.SetFile(filepath.Base(path))
	eachPacket(t, path, func(_ int, data []byte, ci gopacket.CaptureInfo, link layers.LinkType) {
		w.Packet(data, ci, link)
	})
	w.Flush()
	return rec, w.Stats()
}

func noAnomalies(t *testing.T, st *Stats) {
	t.Helper()
	if len(st.Anomalies) != 0 {
		t.Errorf("anomalies %v", st.Anomalies)
	}
}

// TestSMB1AtJob: pcaps/impacket-at-smb1.pcap is Impacket's NetrJobAdd and
// NetrJobDel over an SMB1 (NT LM 0.12) atsvc pipe, written with WRITE_ANDX
// and read back with READ_ANDX.
func TestSMB1AtJob(t *testing.T) {
	rec, st := replayWorker(t, "../pcaps/impacket-at-smb1.pcap")
	noAnomalies(t, st)
	if len(rec.calls) != 2 {
		t.Fatalf("%d calls, want NetrJobAdd and NetrJobDel", len(rec.calls))
	}
	add, del := rec.calls[0], rec.calls[1]
	if add.Iface != dissect.IfaceATSVC || add.Opnum != 0 || !add.Responded || add.DecodeError != "" {
		t.Fatalf("NetrJobAdd %+v", add)
	}
	if add.Tsch == nil || add.Tsch.Task == nil || !strings.Contains(add.Tsch.Task.Command, `\\10.77.0.1\share\payload.exe`) {
		t.Fatalf("NetrJobAdd command not decoded: %+v", add.Tsch)
	}
	if del.Opnum != 1 || !del.Responded {
		t.Fatalf("NetrJobDel %+v", del)
	}
	want := detect.SMBContext{Version: 1, Dialect: "NT LM 0.12", SessionID: 10, Tree: `\\10.77.0.2\IPC$`, Pipe: "atsvc", FileID: "0001"}
	if add.SMB == nil || *add.SMB != want {
		t.Fatalf("SMB context %+v, want %+v", add.SMB, want)
	}
	if u := add.User; u == nil || u.User != "alice" || u.Domain != "LAB" || u.From != "smb_session" || u.Mechanism != "NTLMSSP" {
		t.Fatalf("user %+v", add.User)
	}
	if add.Transport != detect.TransportNamedPipe || len(add.Frames) != 2 || add.Frames[0] != 20 || add.Frames[1] != 23 {
		t.Fatalf("transport %s frames %v", add.Transport, add.Frames)
	}
	if st.SMBSessions != 1 || st.Binds["ATSVC"] != 1 {
		t.Fatalf("sessions %d binds %v", st.SMBSessions, st.Binds)
	}
}

// TestSMB1Samrdump: Impacket samrdump over SMB1, 27 WRITE_ANDX and 27
// READ_ANDX on \samr, each one DCE-RPC PDU (tshark).
func TestSMB1Samrdump(t *testing.T) {
	rec, st := replayWorker(t, sharedPcap(t, "B_elcabezzonn__samrdump.pcap"))
	noAnomalies(t, st)
	if st.Binds["samr"] != 1 || st.RPCPDUs != 54 {
		t.Fatalf("binds %v, %d PDUs, want 1 samr bind and 54 PDUs", st.Binds, st.RPCPDUs)
	}
	// The session's end (LOGOFF_ANDX) is passed on; nothing else.
	files := slices.DeleteFunc(slices.Clone(rec.files), func(f *detect.FileOp) bool { return f.Op == detect.FileOpLogoff })
	if len(rec.calls) != 0 || len(files) != 0 {
		t.Fatalf("%d calls %d file ops from samr", len(rec.calls), len(files))
	}
}

// TestSMB1Smbexec: Impacket smbexec over SMB1: svcctl on a pipe, and the
// command output read from C$\__output then deleted with SMB_COM_DELETE,
// twice.
func TestSMB1Smbexec(t *testing.T) {
	rec, st := replayWorker(t, sharedPcap(t, "B_hangchuanin__smbexec.pcapng"))
	noAnomalies(t, st)
	if st.Binds["svcctl"] != 1 || st.RPCPDUs != 20 {
		t.Fatalf("binds %v, %d PDUs", st.Binds, st.RPCPDUs)
	}
	var ops []string
	for _, f := range rec.files {
		if f.Share != "C$" || f.Path != "__output" || f.SMB.Version != 1 {
			t.Fatalf("file op %+v", f)
		}
		ops = append(ops, f.Op)
		if f.Op == "read" && f.Bytes != 21 {
			t.Errorf("read %d bytes of __output, want 21", f.Bytes)
		}
	}
	if strings.Join(ops, ",") != "read,delete,read,delete" {
		t.Fatalf("file ops %v", ops)
	}
}

// TestSMB1RawNTLMSSP: B_zeek__raw_ntlm_in_smb.pcap carries NTLMSSP without
// SPNEGO in the extended-security blob (frame 22: TEST-F7DFBC3FE9\test
// from BABYBOOK, UID 2048), then srvsvc and lsarpc over TransactNmPipe.
func TestSMB1RawNTLMSSP(t *testing.T) {
	path := sharedPcap(t, "B_zeek__raw_ntlm_in_smb.pcap")
	_, st := replayWorker(t, path)
	noAnomalies(t, st)
	if st.Binds["srvsvc"] != 1 || st.Binds["lsarpc"] != 1 || st.SMBSessions != 1 {
		t.Fatalf("binds %v sessions %d", st.Binds, st.SMBSessions)
	}

	s, _ := feedSMB(t, path, nil)
	ss := s.sessions[2048]
	if ss == nil || ss.user == nil {
		t.Fatalf("no user for UID 2048: %+v", s.sessions)
	}
	u := ss.user
	if u.User != "test" || u.Domain != "TEST-F7DFBC3FE9" || u.Workstation != "BABYBOOK" || u.Mechanism != "NTLMSSP" {
		t.Fatalf("user %+v", u)
	}
}

// TestSMB1Filestore: every frame VLAN-tagged; Explorer browsing reads
// \WINDOWS\Tasks\desktop.ini (a read, never a write: no task-file alert),
// and PsExec copies PSEXESVC.EXE in 4 writes of 181064 bytes (tshark).
func TestSMB1Filestore(t *testing.T) {
	path := sharedPcap(t, "C_suricata-verify__filestore-filecontainer-smb.pcap")
	rec, st := replayWorker(t, path)
	tasksReads := 0
	var psexesvc uint64
	for _, f := range rec.files {
		p := strings.ToLower(f.Path)
		if strings.HasSuffix(p, `desktop.ini`) && f.Op != "read" {
			t.Errorf("%s of %s", f.Op, f.Path)
		}
		if p == `\windows\tasks\desktop.ini` && f.Op == "read" {
			tasksReads++
		}
		if p == `\psexesvc.exe` && f.Op == "write" {
			psexesvc += f.Bytes
		}
	}
	if tasksReads == 0 || psexesvc != 181064 {
		t.Fatalf("Tasks\\desktop.ini reads %d, PSEXESVC.EXE written %d", tasksReads, psexesvc)
	}
	// Binds on the srvsvc, wkssvc, svcctl and winreg pipes.
	if st.Binds["srvsvc"] == 0 || st.Binds["svcctl"] == 0 || st.Binds["winreg"] == 0 {
		t.Fatalf("binds %v", st.Binds)
	}
	for k := range st.Anomalies {
		// PsExec's stdin/stdout pipes carry its own protocol, not DCE-RPC.
		if k != "bad_message_header" {
			t.Errorf("anomaly %s", k)
		}
	}

	// The detector sees nothing to alert on.
	sink := &countSink{}
	out := output.NewOutput(sink)
	res := Replay(context.Background(), ReplayConfig{Detect: detect.Options{Observer: "test"}, Output: out}, []string{path})
	for _, err := range res.Errors {
		t.Fatal(err)
	}
	if err := out.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sink.alerts != 0 {
		t.Fatalf("%d alerts", sink.alerts)
	}
}

// countSink counts alert events published to it.
type countSink struct{ alerts int }

func (c *countSink) Publish(r output.Record) error {
	if r.Kind == "alert" {
		c.alerts++
	}
	return nil
}
func (c *countSink) Close(context.Context) error { return nil }

// smbMsg is one NBSS message and the direction it travelled (0 client).
type smbMsg struct {
	dir  int
	data []byte
}

// feedSMB runs the SMB messages of the first SMB connection in a capture,
// in capture order, through a conn's framers; edit may replace messages.
// It exposes the connection state a Worker keeps private.
func feedSMB(t *testing.T, path string, edit func([]smbMsg) []smbMsg) (*smbState, *Stats) {
	t.Helper()
	var msgs []smbMsg
	var client uint16
	eachPacket(t, path, func(_ int, data []byte, _ gopacket.CaptureInfo, link layers.LinkType) {
		pkt := gopacket.NewPacket(data, link, gopacket.Default)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || len(tcp.Payload) == 0 {
			return
		}
		sp, dp := uint16(tcp.SrcPort), uint16(tcp.DstPort)
		if client == 0 && dp == portSMB {
			client = sp
		}
		switch {
		case client != 0 && sp == client && dp == portSMB:
			msgs = append(msgs, smbMsg{0, append([]byte(nil), tcp.Payload...)})
		case client != 0 && dp == client && sp == portSMB:
			msgs = append(msgs, smbMsg{1, append([]byte(nil), tcp.Payload...)})
		}
	})
	if edit != nil {
		msgs = edit(msgs)
	}
	rec := &collect{}
	w := NewWorker(Options{}, rec, nil)
	c := &conn{w: w, env: &w.env, client: -1}
	smb := newSMBState(c)
	c.setApp(smb)
	for i, m := range msgs {
		c.frame = uint64(i + 1)
		c.half[m.dir].feed(c, m.dir, m.data)
	}
	return smb, w.Stats()
}

// TestSMB1TransactionSecondary splits the srvsvc bind of
// B_zeek__raw_ntlm_in_smb.pcap frame 31 (TransactNmPipe, 72 data bytes)
// into a primary with 40 bytes, the server's interim response and a
// TRANSACTION_SECONDARY with the other 32, as a client whose buffer is
// too small would. The bind must reach the pipe whole.
func TestSMB1TransactionSecondary(t *testing.T) {
	path := sharedPcap(t, "B_zeek__raw_ntlm_in_smb.pcap")
	split := func(msgs []smbMsg) []smbMsg {
		var out []smbMsg
		done := false
		for _, m := range msgs {
			smb := m.data[4:]
			if done || m.dir != 0 || smb[4] != dissect.SMB1Transaction {
				out = append(out, m)
				continue
			}
			done = true
			le := binary.LittleEndian
			w := smb[33:]
			dataOff, dataLen := int(le.Uint16(w[24:])), int(le.Uint16(w[22:]))
			if dataLen != 72 {
				t.Fatalf("first transaction has %d data bytes", dataLen)
			}
			// Primary: the first 40 data bytes.
			prim := append([]byte(nil), smb[:dataOff+40]...)
			le.PutUint16(prim[33+22:], 40)
			bc := le.Uint16(prim[33+2*int(prim[32]):])
			le.PutUint16(prim[33+2*int(prim[32]):], bc-32)
			out = append(out, smbMsg{0, nbss(prim)})
			// Interim response: the request's header as a reply, no words.
			interim := append([]byte(nil), smb[:32]...)
			interim[9] |= dissect.SMB1FlagsReply
			interim = append(interim, 0, 0, 0)
			out = append(out, smbMsg{1, nbss(interim)})
			// Secondary: 8 words, then the remaining 32 bytes.
			sec := append([]byte(nil), smb[:32]...)
			sec[4] = dissect.SMB1TransactionSec
			words := make([]byte, 16)
			le.PutUint16(words[2:], 72)         // TotalDataCount
			le.PutUint16(words[10:], 32)        // DataCount
			le.PutUint16(words[12:], 32+1+16+2) // DataOffset
			le.PutUint16(words[14:], 40)        // DataDisplacement
			sec = append(sec, 8)
			sec = append(sec, words...)
			sec = append(sec, 32, 0)
			sec = append(sec, smb[dataOff+40:dataOff+72]...)
			out = append(out, smbMsg{0, nbss(sec)})
		}
		return out
	}
	_, st := feedSMB(t, path, split)
	noAnomalies(t, st)
	if st.Binds["srvsvc"] != 1 || st.Binds["lsarpc"] != 1 {
		t.Fatalf("binds %v", st.Binds)
	}

	// Out of order: the secondary claims displacement 8; the pipe loses
	// sync rather than taking misplaced bytes, and says so.
	bad := func(msgs []smbMsg) []smbMsg {
		msgs = split(msgs)
		for _, m := range msgs {
			if m.data[4+4] == dissect.SMB1TransactionSec {
				binary.LittleEndian.PutUint16(m.data[4+33+14:], 8)
			}
		}
		return msgs
	}
	_, st = feedSMB(t, path, bad)
	if st.Anomalies["smb1_transaction_out_of_order"] != 1 || st.Binds["srvsvc"] != 0 {
		t.Fatalf("anomalies %v binds %v", st.Anomalies, st.Binds)
	}
}

func nbss(smb []byte) []byte {
	return append([]byte{0, byte(len(smb) >> 16), byte(len(smb) >> 8), byte(len(smb))}, smb...)
}

// TestSMB1Segmentation feeds the atsvc capture's SMB stream one byte at a
// time: the same calls must come out.
func TestSMB1Segmentation(t *testing.T) {
	bytewise := func(msgs []smbMsg) []smbMsg {
		var out []smbMsg
		for _, m := range msgs {
			for i := range m.data {
				out = append(out, smbMsg{m.dir, m.data[i : i+1]})
			}
		}
		return out
	}
	s, st := feedSMB(t, "../pcaps/impacket-at-smb1.pcap", bytewise)
	noAnomalies(t, st)
	if st.TschCalls != 2 || st.Binds["ATSVC"] != 1 {
		t.Fatalf("calls %d binds %v", st.TschCalls, st.Binds)
	}
	if len(s.smb1.pending) != 0 {
		t.Fatalf("%d requests left pending", len(s.smb1.pending))
	}
}
