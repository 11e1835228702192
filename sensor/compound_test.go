package sensor

// SMB2 compound chains (MS-SMB2 3.2.4.1.4) and SMB1 AndX chains (MS-CIFS
// 2.2.3.4) on crafted traffic: the messages are built here from the
// specifications, sent in real Ethernet/IPv4/TCP frames (ocCapture) and
// replayed through a worker, the resolver and the detector.

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	tschitss "github.com/oiweiwei/go-msrpc/msrpc/tsch/itaskschedulerservice/v1"

	"github.com/tschsensor/tschsensor/dissect"
)

// cmp2 is one SMB2 message of a compound.
type cmp2 struct {
	cmd     uint16
	resp    bool
	related bool
	status  uint32
	msgID   uint64
	tree    uint32
	session uint64
	body    []byte
}

const (
	cmpTree = 5
)

// smb2Compound joins messages into one NBSS message: each but the last
// padded to 8 bytes, NextCommand its padded length.
func smb2Compound(ms ...cmp2) []byte {
	var out []byte
	for i, m := range ms {
		b := []byte{0xfe, 'S', 'M', 'B', 64, 0, 1, 0}
		b = binary.LittleEndian.AppendUint32(b, m.status)
		b = binary.LittleEndian.AppendUint16(b, m.cmd)
		b = binary.LittleEndian.AppendUint16(b, 1)
		var flags uint32
		if m.resp {
			flags |= 1
		}
		if m.related {
			flags |= 4
		}
		b = binary.LittleEndian.AppendUint32(b, flags)
		b = binary.LittleEndian.AppendUint32(b, 0) // NextCommand, set below
		b = binary.LittleEndian.AppendUint64(b, m.msgID)
		b = binary.LittleEndian.AppendUint32(b, 0xfeff)
		b = binary.LittleEndian.AppendUint32(b, m.tree)
		b = binary.LittleEndian.AppendUint64(b, m.session)
		b = append(b, make([]byte, 16)...)
		b = append(b, m.body...)
		if i < len(ms)-1 {
			for len(b)%8 != 0 {
				b = append(b, 0)
			}
			binary.LittleEndian.PutUint32(b[20:], uint32(len(b)))
		}
		out = append(out, b...)
	}
	return append([]byte{0, byte(len(out) >> 16), byte(len(out) >> 8), byte(len(out))}, out...)
}

// Bodies (MS-SMB2 2.2.x), offsets from the start of the SMB2 header.
var allOnes = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func cmpCreateReq(name string) []byte {
	nm := ocUTF16(name)
	b := []byte{57, 0, 0, 0}
	b = append(b, ocU32(2)...)
	b = append(b, make([]byte, 16)...)
	b = append(b, ocU32(0x12019f, 0, 7, 1, 0x40)...)
	b = append(b, ocU16(64+56, uint16(len(nm)))...)
	b = append(b, ocU32(0, 0)...)
	return append(b, nm...)
}

// cmpCreateResp answers a CREATE: a pipe has no timestamps and
// FILE_ATTRIBUTE_NORMAL, a file has both.
func cmpCreateResp(fid []byte, pipe bool) []byte {
	b := []byte{89, 0, 0, 0}
	b = append(b, ocU32(1)...)
	times := make([]byte, 32)
	attrs := uint32(0x80)
	if !pipe {
		for i := range 4 {
			binary.LittleEndian.PutUint64(times[8*i:], 0x01d9_7989_00cd_64d0)
		}
		attrs = 0x20
	}
	b = append(b, times...)
	b = append(b, make([]byte, 16)...) // allocation size, end of file
	b = append(b, ocU32(attrs, 0)...)
	b = append(b, fid...)
	return append(b, ocU32(0, 0)...)
}

func cmpWriteReq(fid, data []byte) []byte {
	b := append(ocU16(49, 64+48), ocU32(uint32(len(data)))...)
	b = append(b, make([]byte, 8)...)
	b = append(b, fid...)
	b = append(b, make([]byte, 16)...)
	return append(b, data...)
}

func cmpWriteResp(n int) []byte { return append(ocU16(17, 0), ocU32(uint32(n), 0, 0)...) }

func cmpReadReq(fid []byte) []byte {
	b := append([]byte{49, 0, 0, 0}, ocU32(4280)...)
	b = append(b, make([]byte, 8)...)
	b = append(b, fid...)
	return append(b, make([]byte, 17)...)
}

func cmpReadResp(data []byte) []byte {
	b := append([]byte{17, 0, 64 + 16, 0}, ocU32(uint32(len(data)), 0, 0)...)
	return append(b, data...)
}

func cmpEcho() []byte { return []byte{4, 0, 0, 0} }

func cmpCloseReq(fid []byte) []byte { return append(append(ocU16(24, 0), ocU32(0)...), fid...) }

func cmpCloseResp() []byte { return append(ocU16(60, 0), make([]byte, 56)...) }

// cmpTask is the registration the compound tests carry.
const (
	cmpTaskPath = `\CompoundTask`
	cmpCommand  = "powershell.exe"
)

func cmpRPC(t *testing.T) (bind, bindAck, req, resp []byte) {
	ndrSyn := ocSyntax(t, ocUUIDNDR, 2, 0)
	bind = ocBind(1, 4280, []ocCtxElem{{0, ocSyntax(t, ocUUIDITSS, 1, 0), [][]byte{ndrSyn}}})
	bindAck = ocBindAck(1, 4280, `\PIPE\atsvc`, []ocResult{{0, 0, ndrSyn}})
	stub := ocMarshal(t, false, &tschitss.RegisterTaskRequest{Path: cmpTaskPath, XML: ocTaskXML, Flags: 2, LogonType: 5})
	// Several fragments in one WRITE: a pipe is a byte stream.
	req = bytes.Join(ocRequest(2, 0, 1, stub, 4256), nil)
	resp = ocResponse(2, 0, ocMarshal(t, false, &tschitss.RegisterTaskResponse{ActualPath: cmpTaskPath}))
	return bind, bindAck, req, resp
}

// cmpOpen opens a capture with an SMB2 connection: NEGOTIATE and, when
// tree is set, a TREE_CONNECT to IPC$.
func cmpOpen(t *testing.T, tree bool) (*ocCapture, *ocSMB) {
	c := &ocCapture{t: t, now: ocStart}
	s := &ocSMB{f: c.open(50100, 445)}
	s.negotiate()
	if tree {
		s.treeConnect(`\\10.99.0.2\IPC$`)
	} else {
		s.tree = cmpTree
	}
	return c, s
}

// cmpReplay runs the capture and returns "interface operation path command"
// per call and the alert rule ids.
func cmpReplay(t *testing.T, c *ocCapture) (calls, alerts []string, anoms map[string]uint64) {
	t.Helper()
	pkts := make([]plPacket, len(c.pkts))
	for i, p := range c.pkts {
		pkts[i] = plPacket{p.data, p.ci, layers.LinkTypeEthernet}
	}
	run := runPackets(t, pkts)
	for _, k := range run.calls {
		calls = append(calls, k.key)
	}
	for _, a := range run.alerts {
		alerts = append(alerts, a.rule)
	}
	return calls, alerts, run.anoms
}

func cmpWantRegistered(t *testing.T, calls, alerts []string, anoms map[string]uint64) {
	t.Helper()
	want := `ITaskSchedulerService SchRpcRegisterTask/1 path="\\CompoundTask" cmd="powershell.exe" args="` +
		strings.ReplaceAll(ocTaskArgs, `"`, `\"`) + `" success`
	if len(calls) != 1 || calls[0] != want {
		t.Errorf("calls %q,\n want [%q]\n anomalies %v", calls, want, anoms)
	}
	if !strings.Contains(strings.Join(alerts, " "), "remote_task_registered") {
		t.Errorf("alerts %q, want remote_task_registered", alerts)
	}
}

var ocStart = time.Date(2026, 1, 12, 9, 30, 0, 0, time.UTC)

// TestSMB2CompoundRelatedPipe: CREATE of atsvc, WRITE of the bind and READ
// of the bind_ack in one related compound (the WRITE and READ name the
// handle all-ones: "the one just created"), answered by one compound; the
// registration follows on the handle the CREATE response named.
func TestSMB2CompoundRelatedPipe(t *testing.T) {
	for _, connected := range []bool{true, false} {
		c, s := cmpOpen(t, connected)
		bind, ack, req, resp := cmpRPC(t)
		fid := []byte{7, 0, 0, 0, 0, 0, 0, 0, 0x47, 0, 0, 0, 0x99, 0, 0, 0}
		id := s.msgID
		s.f.send(true, smb2Compound(
			cmp2{cmd: 5, msgID: id, tree: s.tree, session: s.session, body: cmpCreateReq("atsvc")},
			cmp2{cmd: 9, related: true, msgID: id + 1, tree: s.tree, session: s.session, body: cmpWriteReq(allOnes, bind)},
			cmp2{cmd: 8, related: true, msgID: id + 2, tree: s.tree, session: s.session, body: cmpReadReq(allOnes)}))
		s.f.send(false, smb2Compound(
			cmp2{cmd: 5, resp: true, msgID: id, tree: s.tree, session: s.session, body: cmpCreateResp(fid, true)},
			cmp2{cmd: 9, resp: true, related: true, msgID: id + 1, tree: s.tree, session: s.session, body: cmpWriteResp(len(bind))},
			cmp2{cmd: 8, resp: true, related: true, msgID: id + 2, tree: s.tree, session: s.session, body: cmpReadResp(ack)}))
		s.msgID += 3
		s.write(fid, req)
		s.read(fid, resp)
		s.closeFile(fid)
		s.f.close()
		calls, alerts, anoms := cmpReplay(t, c)
		cmpWantRegistered(t, calls, alerts, anoms)
		if anoms["smb_pipe_without_create"] != 0 {
			t.Errorf("tree connected %v: the compound's WRITE was not taken for the created pipe: %v", connected, anoms)
		}
	}
}

// TestSMB2CompoundUnrelated: an unrelated compound whose first message is
// harmless (ECHO, then the CLOSE of a disk file) and whose last is the
// WRITE carrying SchRpcRegisterTask; the response compound carries the READ
// with the answer after an ECHO.
func TestSMB2CompoundUnrelated(t *testing.T) {
	c, s := cmpOpen(t, true)
	bind, ack, req, resp := cmpRPC(t)
	fid := s.create("atsvc", 3)
	s.write(fid, bind)
	s.read(fid, ack)
	id := s.msgID
	other := []byte{9, 0, 0, 0, 0, 0, 0, 0, 0x49, 0, 0, 0, 0x99, 0, 0, 0}
	s.f.send(true, smb2Compound(
		cmp2{cmd: 13, msgID: id, session: s.session, body: cmpEcho()},
		cmp2{cmd: 6, msgID: id + 1, tree: s.tree, session: s.session, body: cmpCloseReq(other)},
		cmp2{cmd: 9, msgID: id + 2, tree: s.tree, session: s.session, body: cmpWriteReq(fid, req)}))
	s.f.send(false, smb2Compound(
		cmp2{cmd: 13, resp: true, msgID: id, session: s.session, body: cmpEcho()},
		cmp2{cmd: 6, resp: true, msgID: id + 1, tree: s.tree, session: s.session, body: cmpCloseResp()},
		cmp2{cmd: 9, resp: true, msgID: id + 2, tree: s.tree, session: s.session, body: cmpWriteResp(len(req))}))
	s.f.send(true, smb2Compound(
		cmp2{cmd: 13, msgID: id + 3, session: s.session, body: cmpEcho()},
		cmp2{cmd: 8, msgID: id + 4, tree: s.tree, session: s.session, body: cmpReadReq(fid)}))
	s.f.send(false, smb2Compound(
		cmp2{cmd: 13, resp: true, msgID: id + 3, session: s.session, body: cmpEcho()},
		cmp2{cmd: 8, resp: true, msgID: id + 4, tree: s.tree, session: s.session, body: cmpReadResp(resp)}))
	s.msgID += 5
	s.closeFile(fid)
	s.f.close()
	calls, alerts, anoms := cmpReplay(t, c)
	cmpWantRegistered(t, calls, alerts, anoms)
}

// TestSMB2CompoundUnconnectedTree: mid-stream, the trees were never seen
// connected. A related compound CREATEs a file (the response has
// timestamps: a disk share), writes a bind to it and reads a bind_ack back;
// a registration is then written to and read from it. Another compound
// opens atsvc (no timestamps, FILE_ATTRIBUTE_NORMAL) and binds. Only the
// pipe carries calls: the file's bytes are file data whatever they look like.
func TestSMB2CompoundUnconnectedTree(t *testing.T) {
	c, s := cmpOpen(t, false)
	bind, ack, req, resp := cmpRPC(t)
	disk := []byte{8, 0, 0, 0, 0, 0, 0, 0, 0x48, 0, 0, 0, 0x99, 0, 0, 0}
	id := s.msgID
	s.f.send(true, smb2Compound(
		cmp2{cmd: 5, msgID: id, tree: 9, session: s.session, body: cmpCreateReq(`Temp\x.bin`)},
		cmp2{cmd: 9, related: true, msgID: id + 1, tree: 9, session: s.session, body: cmpWriteReq(allOnes, bind)},
		cmp2{cmd: 8, related: true, msgID: id + 2, tree: 9, session: s.session, body: cmpReadReq(allOnes)}))
	s.f.send(false, smb2Compound(
		cmp2{cmd: 5, resp: true, msgID: id, tree: 9, session: s.session, body: cmpCreateResp(disk, false)},
		cmp2{cmd: 9, resp: true, related: true, msgID: id + 1, tree: 9, session: s.session, body: cmpWriteResp(len(bind))},
		cmp2{cmd: 8, resp: true, related: true, msgID: id + 2, tree: 9, session: s.session, body: cmpReadResp(ack)}))
	s.msgID += 3
	s.tree = 9
	s.write(disk, req)
	s.read(disk, resp)
	s.tree = cmpTree
	fid := []byte{7, 0, 0, 0, 0, 0, 0, 0, 0x47, 0, 0, 0, 0x99, 0, 0, 0}
	id = s.msgID
	s.f.send(true, smb2Compound(
		cmp2{cmd: 5, msgID: id, tree: s.tree, session: s.session, body: cmpCreateReq("atsvc")},
		cmp2{cmd: 9, related: true, msgID: id + 1, tree: s.tree, session: s.session, body: cmpWriteReq(allOnes, bind)}))
	s.f.send(false, smb2Compound(
		cmp2{cmd: 5, resp: true, msgID: id, tree: s.tree, session: s.session, body: cmpCreateResp(fid, true)},
		cmp2{cmd: 9, resp: true, related: true, msgID: id + 1, tree: s.tree, session: s.session, body: cmpWriteResp(len(bind))}))
	s.msgID += 2
	s.read(fid, ack)
	s.write(fid, req)
	s.read(fid, resp)
	s.f.close()
	calls, alerts, anoms := cmpReplay(t, c)
	cmpWantRegistered(t, calls, alerts, anoms)
	if anoms["smb_tree_without_connect"] != 2 {
		t.Errorf("anomalies %v, want smb_tree_without_connect 2", anoms)
	}
}

// smbMessages returns the NBSS messages of a capture's first connection to
// port 445, whole, in the order they completed.
func smbMessages(t *testing.T, path string) []smbMsg {
	t.Helper()
	var msgs []smbMsg
	var buf [2][]byte
	var client uint16
	var f frame
	for _, p := range plLoad(t, path) {
		if decodeFrame(p.data, p.link, &f) != decTCP || len(f.tcp) < 20 {
			continue
		}
		hl := int(f.tcp[12]>>4) * 4
		sp, dp := binary.BigEndian.Uint16(f.tcp), binary.BigEndian.Uint16(f.tcp[2:])
		if hl >= len(f.tcp) {
			continue
		}
		if client == 0 && dp == portSMB {
			client = sp
		}
		dir := -1
		switch {
		case sp == client && dp == portSMB:
			dir = 0
		case dp == client && sp == portSMB:
			dir = 1
		}
		if dir < 0 {
			continue
		}
		buf[dir] = append(buf[dir], f.tcp[hl:]...)
		for len(buf[dir]) >= 4 {
			n := 4 + (int(buf[dir][1])<<16 | int(buf[dir][2])<<8 | int(buf[dir][3]))
			if len(buf[dir]) < n {
				break
			}
			msgs = append(msgs, smbMsg{dir, append([]byte(nil), buf[dir][:n]...)})
			buf[dir] = buf[dir][n:]
		}
	}
	return msgs
}

// smb1Chain appends the first command block of b (an SMB1 message without
// NBSS header) to the last block of a, as AndX chaining does: the block
// moves by a multiple of 4 bytes so Unicode strings and data keep their
// alignment, and offsets inside it (WRITE_ANDX DataOffset) move with it.
func smb1Chain(t *testing.T, a, b []byte) []byte {
	t.Helper()
	var h dissect.SMB1Header
	if err := dissect.DecodeSMB1Header(a, &h); err != nil {
		t.Fatal(err)
	}
	var ch dissect.SMB1Chain
	var last dissect.SMB1Command
	ch.Start(a, &h)
	for ch.Next(&last) {
	}
	out := append([]byte(nil), a...)
	for (len(out)-dissect.SMB1HeaderLen)%4 != 0 {
		out = append(out, 0)
	}
	pos := len(out)
	delta := pos - dissect.SMB1HeaderLen
	w := out[last.Offset+1:]
	w[0] = b[4] // AndXCommand: b's command
	binary.LittleEndian.PutUint16(w[2:], uint16(pos))
	block := append([]byte(nil), b[dissect.SMB1HeaderLen:]...)
	if b[4] == dissect.SMB1WriteAndX && !(b[9]&dissect.SMB1FlagsReply != 0) {
		off := binary.LittleEndian.Uint16(block[1+22:])
		binary.LittleEndian.PutUint16(block[1+22:], off+uint16(delta))
	}
	return append(out, block...)
}

// cmpSMB1Replay sends SMB messages over one TCP connection to port 445 and
// replays it.
func cmpSMB1Replay(t *testing.T, msgs []smbMsg) (calls, alerts []string, anoms map[string]uint64) {
	t.Helper()
	c := &ocCapture{t: t, now: ocStart}
	f := c.open(50200, 445)
	for _, m := range msgs {
		f.send(m.dir == 0, m.data)
	}
	f.close()
	return cmpReplay(t, c)
}

// TestSMB1AndXChains: impacket-atexec-smb1-clear with its TREE_CONNECT_ANDX
// and NT_CREATE_ANDX of \atsvc chained into one request (and one response),
// and a LOCKING_ANDX (no locks: harmless) chained before the WRITE_ANDX
// that carries SchRpcRegisterTask. The calls and alerts must be those of
// the capture as it is, the pipe known from its CREATE.
func TestSMB1AndXChains(t *testing.T) {
	const path = "../pcaps/impacket-atexec-smb1-clear.pcap"
	want := runPackets(t, plLoad(t, path))
	msgs := smbMessages(t, path)
	cmdOf := func(m smbMsg) (uint8, bool) { return m.data[4+4], m.data[4+9]&dissect.SMB1FlagsReply != 0 }
	var out []smbMsg
	var tcReq, tcResp []byte
	chained, locked := 0, 0
	for _, m := range msgs {
		cmd, reply := cmdOf(m)
		smb := m.data[4:]
		switch {
		case cmd == dissect.SMB1TreeConnectAndX && tcReq == nil && !reply:
			tcReq = smb
			continue
		case cmd == dissect.SMB1TreeConnectAndX && tcResp == nil && reply:
			tcResp = smb
			continue
		case cmd == dissect.SMB1NTCreateAndX && !reply && tcReq != nil && chained == 0:
			out = append(out, smbMsg{0, nbss(smb1Chain(t, tcReq, smb))})
			chained++
			continue
		case cmd == dissect.SMB1NTCreateAndX && reply && tcResp != nil && chained == 1:
			out = append(out, smbMsg{1, nbss(smb1Chain(t, tcResp, smb))})
			chained++
			continue
		case cmd == dissect.SMB1WriteAndX && !reply && len(smb) > 1000 && locked == 0:
			// LOCKING_ANDX: FID, no lock type, no timeout, no (un)locks.
			lock := append([]byte(nil), smb[:dissect.SMB1HeaderLen]...)
			lock[4] = dissect.SMB1LockingAndX
			lock = append(lock, 8, 0xff, 0, 0, 0)
			lock = append(lock, smb[dissect.SMB1HeaderLen+1+4:dissect.SMB1HeaderLen+1+6]...) // the WRITE's FID
			lock = append(lock, make([]byte, 10)...)
			lock = append(lock, 0, 0)
			out = append(out, smbMsg{0, nbss(smb1Chain(t, lock, smb))})
			locked++
			continue
		}
		out = append(out, m)
	}
	if chained != 2 || locked != 1 {
		t.Fatalf("chained %d, locked %d: capture not as expected", chained, locked)
	}
	calls, alerts, anoms := cmpSMB1Replay(t, out)
	var wantCalls, wantAlerts []string
	for _, c := range want.calls {
		wantCalls = append(wantCalls, c.key)
	}
	for _, a := range want.alerts {
		wantAlerts = append(wantAlerts, a.rule)
	}
	if strings.Join(calls, "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("calls\n %q\nwant\n %q\nanomalies %v", calls, wantCalls, anoms)
	}
	if strings.Join(alerts, " ") != strings.Join(wantAlerts, " ") {
		t.Errorf("alerts %q, want %q", alerts, wantAlerts)
	}
	for _, a := range []string{"smb_pipe_without_create", "smb_tree_without_connect", "smb1_bad_andx_chain"} {
		if anoms[a] != 0 {
			t.Errorf("anomalies %v: the chained TREE_CONNECT/NT_CREATE were not followed", anoms)
		}
	}
}
