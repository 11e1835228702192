package sensor

import (
	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// SMB1 status words the sensor distinguishes. A DOS-style status (Flags2
// without NT status) packs class and code; ERRDOS/ERRmoredata is the
// pre-NT spelling of STATUS_BUFFER_OVERFLOW.
const (
	smb1DOSMoreData = 0x00ea0001
	// smb1OplockBreakMID marks the server's oplock break, a LOCKING_ANDX
	// sent without the reply flag (MS-CIFS 2.2.4.32.1).
	smb1OplockBreakMID = 0xffff
)

// smb1State is the SMB1 part of a connection's SMB state. It drives the
// shared smbState: sessions by UID, trees by (UID, TID), files by (UID,
// FID) with the 16-bit FID in the first two bytes of a dissect.FileID.
type smb1State struct {
	s       *smbState
	pending map[smb1Key]*smb1Req
	seq     uint64
	// pendAge orders pending requests by arrival for eviction: a scan
	// for the oldest per request made a flood of unanswered requests cost
	// MaxPending steps each.
	pendAge ageQueue

	hdr     dissect.SMB1Header
	chain   dissect.SMB1Chain
	cmd     dissect.SMB1Command
	setup   dissect.SMB1SessionSetup
	setupR  dissect.SMB1SessionSetupResponse
	create  dissect.SMB1CreateRequest
	createR dissect.SMB1CreateResponse
	write   dissect.SMB1Write
	trans   dissect.SMB1Trans
}

// smb1Key matches a response to its request (MS-CIFS 3.2.5.1: PID and MID).
type smb1Key struct {
	pid uint32
	mid uint16
}

// smb1Req is a request message awaiting its response: one op per command
// of its AndX chain, plus the progress of a TRANSACTION on a pipe, whose
// data may continue in secondary requests and several response parts.
type smb1Req struct {
	seq   uint64
	frame uint64
	tid   uint16
	uid   uint16 // the request's: a LOGOFF_ANDX response may carry UID 0
	ops   []smb1Op

	transPipe bool
	transFID  uint16
	transIn   int // request data bytes fed so far
	transOut  int // response data bytes fed so far
}

type smb1Op struct {
	cmd     uint8
	done    bool
	path    string // tree connect UNC path
	name    string // create, open, delete
	options uint32 // create options (delete on close)
	fid     uint16 // read, close, set disposition
	delete  bool   // set disposition: delete pending
	user    *detect.Identity
}

func newSMB1State(s *smbState) *smb1State {
	return &smb1State{s: s, pending: make(map[smb1Key]*smb1Req)}
}

// fid16 stores an SMB1 FID in the shared handle type.
func fid16(fid uint16) dissect.FileID { return dissect.FileID{byte(fid), byte(fid >> 8)} }

// message handles one SMB1 message (the NBSS payload) from direction dir.
func (m *smb1State) message(dir int, msg []byte) {
	s := m.s
	if s.version == 0 {
		s.version = 1
	}
	h := &m.hdr
	if err := dissect.DecodeSMB1Header(msg, h); err != nil {
		s.c.anomaly("smb1_bad_header")
		return
	}
	if h.Command == dissect.SMB1LockingAndX && h.MID == smb1OplockBreakMID && !h.Response() {
		return // the server's oplock break: not a client request
	}
	if s.c.client < 0 {
		if h.Response() {
			s.c.setClient(1 - dir)
		} else {
			s.c.setClient(dir)
		}
	}
	if h.Response() {
		m.response(msg, h)
	} else {
		m.request(msg, h)
	}
}

func (m *smb1State) request(msg []byte, h *dissect.SMB1Header) {
	s := m.s
	key := smb1Key{h.PID, h.MID}
	if h.Command == dissect.SMB1TransactionSec {
		m.transSecondary(msg, h, key)
		return
	}
	req := &smb1Req{frame: s.c.frame, tid: h.TID, uid: h.UID}
	m.chain.Start(msg, h)
	cmd := &m.cmd
	for m.chain.Next(cmd) {
		op := smb1Op{cmd: cmd.Command}
		switch cmd.Command {
		case dissect.SMB1SessionSetupAndX:
			if err := dissect.ParseSMB1SessionSetupRequest(msg, h, cmd, &m.setup); err != nil {
				s.c.anomaly("smb1_bad_session_setup")
				continue
			}
			op.user = m.setupIdentity(uint64(h.UID))
		case dissect.SMB1TreeConnectAndX:
			p, _, err := dissect.ParseSMB1TreeConnectRequest(msg, h, cmd)
			if err != nil {
				s.c.anomaly("smb1_bad_tree_connect")
				continue
			}
			op.path = boundName(s.c, p)
		case dissect.SMB1NTCreateAndX:
			if err := dissect.ParseSMB1NTCreateRequest(msg, h, cmd, &m.create); err != nil {
				s.c.anomaly("smb1_bad_create")
				continue
			}
			op.name, op.options = boundName(s.c, m.create.Name), m.create.CreateOptions
		case dissect.SMB1OpenAndX:
			if err := dissect.ParseSMB1OpenRequest(msg, h, cmd, &m.create); err != nil {
				s.c.anomaly("smb1_bad_open")
				continue
			}
			op.name = boundName(s.c, m.create.Name)
		case dissect.SMB1WriteAndX:
			m.writeRequest(msg, h, cmd)
			continue // the response tells nothing more
		case dissect.SMB1ReadAndX:
			fid, _, _, err := dissect.ParseSMB1ReadRequest(cmd)
			if err != nil {
				s.c.anomaly("smb1_bad_read")
				continue
			}
			op.fid = fid
		case dissect.SMB1Transaction:
			m.transRequest(msg, h, cmd, req)
		case dissect.SMB1Transaction2:
			if err := dissect.ParseSMB1TransRequest(msg, h, cmd, &m.trans); err != nil {
				s.c.anomaly("smb1_bad_transaction2")
				continue
			}
			fid, del, ok := dissect.SMB1SetDisposition(&m.trans)
			if !ok {
				continue
			}
			op.fid, op.delete = fid, del
		case dissect.SMB1Close:
			fid, err := dissect.ParseSMB1Close(cmd)
			if err != nil {
				s.c.anomaly("smb1_bad_close")
				continue
			}
			op.fid = fid
		case dissect.SMB1Delete:
			name, err := dissect.ParseSMB1DeleteRequest(msg, h, cmd)
			if err != nil {
				s.c.anomaly("smb1_bad_delete")
				continue
			}
			op.name = boundName(s.c, name)
		case dissect.SMB1Negotiate, dissect.SMB1TreeDisconnect, dissect.SMB1LogoffAndX:
		default:
			continue
		}
		req.ops = append(req.ops, op)
	}
	if m.chain.Err() != nil {
		s.c.anomaly("smb1_bad_andx_chain")
	}
	if len(req.ops) > 0 {
		m.addPending(key, req)
	}
}

// setupIdentity is who a SESSION_SETUP_ANDX request of session uid logs
// on as: from the NTLMSSP or Kerberos token with extended security, else
// from the account and domain sent in clear beside the raw challenge
// responses. The tokens of both directions go to the session's one
// security context, as SMB2's do (a Kerberos AP-REP needs the ticket the
// AP-REQ opened).
func (m *smb1State) setupIdentity(uid uint64) *detect.Identity {
	st := &m.setup
	if st.Extended {
		return m.setupToken(uid, st.SecurityBlob, true)
	}
	id := &detect.Identity{User: st.Account, Domain: st.Domain, Mechanism: "NTLM", From: fromSMBSession}
	if st.Account == "" && len(st.UnicodePassword) == 0 && len(st.OEMPassword) <= 1 {
		id.Mechanism = "anonymous"
		return id
	}
	if len(st.UnicodePassword) > 0 {
		// An NTLMv2 response carries a client blob after its 16-byte
		// proof; NTLMv1 responses are exactly 24 bytes.
		v2 := len(st.UnicodePassword) > 24
		id.NTLMv2 = &v2
	}
	return id
}

// setupToken hands a session setup's security token to session uid's
// context and returns the identity the token names, nil when it names none
// (first legs share uid 0: an earlier exchange's identity is not this one's).
func (m *smb1State) setupToken(uid uint64, blob []byte, fromClient bool) *detect.Identity {
	ss := m.s.session(uid)
	if ss.auth == nil {
		ss.auth = newSecContext(fromSMBSession)
	}
	before := ss.auth.identity()
	ss.auth.token(blob, fromClient, m.s.c.authEnv())
	if id := ss.auth.identity(); id != before {
		return id
	}
	return nil
}

// writeRequest feeds pipe writes to the pipe's RPC channel and counts
// disk-file writes.
func (m *smb1State) writeRequest(msg []byte, h *dissect.SMB1Header, cmd *dissect.SMB1Command) {
	s := m.s
	wr := &m.write
	if err := dissect.ParseSMB1WriteRequest(cmd, wr); err != nil {
		s.c.anomaly("smb1_bad_write")
		return
	}
	data, derr := wr.PipeData(msg)
	f := s.file(uint64(h.UID), fid16(wr.FID), uint32(h.TID), data)
	if f == nil {
		return
	}
	if f.pipe == nil {
		f.written += uint64(wr.DataLength)
		if d, err := wr.Data(msg); err == nil {
			f.keepJobHead(d)
		}
		return
	}
	if derr != nil {
		s.c.anomaly("smb1_write_beyond_message")
		f.pipe.lost(s.c.client)
		return
	}
	f.pipe.feed(s.c.client, data)
}

// transRequest starts a TRANSACTION; TransactNmPipe data goes into the pipe.
func (m *smb1State) transRequest(msg []byte, h *dissect.SMB1Header, cmd *dissect.SMB1Command, req *smb1Req) {
	s := m.s
	t := &m.trans
	if err := dissect.ParseSMB1TransRequest(msg, h, cmd, t); err != nil {
		s.c.anomaly("smb1_bad_transaction")
		return
	}
	if sub, _ := t.SetupWord(0); sub != dissect.TransactNmPipe {
		return
	}
	fid, ok := t.SetupWord(1)
	if !ok {
		s.c.anomaly("smb1_bad_transaction")
		return
	}
	req.transPipe, req.transFID, req.transIn = true, fid, len(t.Data)
	f := s.file(uint64(h.UID), fid16(fid), uint32(h.TID), t.Data)
	if f != nil && f.pipe != nil {
		f.pipe.feed(s.c.client, t.Data)
	}
}

// transSecondary continues a TRANSACTION's request data. Nothing is
// buffered: pieces arriving in order go straight into the pipe; a piece
// out of place loses the pipe's sync, as a TCP gap would.
func (m *smb1State) transSecondary(msg []byte, h *dissect.SMB1Header, key smb1Key) {
	s := m.s
	m.chain.Start(msg, h)
	if !m.chain.Next(&m.cmd) {
		s.c.anomaly("smb1_bad_transaction")
		return
	}
	t := &m.trans
	if err := dissect.ParseSMB1TransSecondary(msg, &m.cmd, t); err != nil {
		s.c.anomaly("smb1_bad_transaction")
		return
	}
	req := m.pending[key]
	if req == nil || !req.transPipe {
		return
	}
	f := s.files[fileKey{uint64(h.UID), fid16(req.transFID)}]
	if f == nil || f.pipe == nil {
		return
	}
	if t.DataDisplacement != req.transIn {
		s.c.anomaly("smb1_transaction_out_of_order")
		f.pipe.lost(s.c.client)
	}
	req.transIn = t.DataDisplacement + len(t.Data)
	f.pipe.feed(s.c.client, t.Data)
}

func (m *smb1State) addPending(key smb1Key, req *smb1Req) {
	s := m.s
	if len(m.pending) >= s.c.env.opt.MaxPending {
		s.c.anomaly("smb_too_many_pending")
		// The oldest request is the most likely to have lost its response.
		m.dropOldestPending()
	}
	m.seq++
	req.seq = m.seq
	m.pending[key] = req
	m.pendAge.push(key.id(), req.seq)
	m.pendAge.compact(len(m.pending), m.pendingLive)
	s.c.env.pendAll.admit(s.c.env, m, key.id(), req.seq)
}

// id packs a key into the age queue's id.
func (k smb1Key) id() uint64 { return uint64(k.pid)<<16 | uint64(k.mid) }

func smb1KeyOf(id uint64) smb1Key { return smb1Key{pid: uint32(id >> 16), mid: uint16(id)} }

func (m *smb1State) pendingLive(id, seq uint64) bool {
	r := m.pending[smb1KeyOf(id)]
	return r != nil && r.seq == seq
}

// op finds the request's op answered by a response block of command cmd;
// a response chain follows its request's order.
func (req *smb1Req) op(cmd uint8) *smb1Op {
	for i := range req.ops {
		if o := &req.ops[i]; o.cmd == cmd && !o.done {
			o.done = true
			return o
		}
	}
	return nil
}

func (m *smb1State) response(msg []byte, h *dissect.SMB1Header) {
	s := m.s
	key := smb1Key{h.PID, h.MID}
	req := m.pending[key]
	if req == nil {
		return // mid-stream: without the request a response names no handle
	}
	keep := false
	ok := h.Status == 0
	uid := uint64(h.UID)
	m.chain.Start(msg, h)
	cmd := &m.cmd
	for m.chain.Next(cmd) {
		if cmd.Command == dissect.SMB1Transaction {
			keep = m.transResponse(msg, h, cmd, req)
			continue
		}
		op := req.op(cmd.Command)
		if op == nil {
			continue
		}
		switch cmd.Command {
		case dissect.SMB1SessionSetupAndX:
			m.setupResponse(msg, h, cmd, op)
		case dissect.SMB1TreeConnectAndX:
			if !ok {
				break
			}
			svc, err := dissect.ParseSMB1TreeConnectResponse(msg, cmd)
			if err != nil {
				s.c.anomaly("smb1_bad_tree_connect")
				break
			}
			s.addTree(treeKey{uid, uint32(h.TID)}, newTree(op.path, shareType(svc)))
		case dissect.SMB1TreeDisconnect:
			delete(s.trees, treeKey{uid, uint32(req.tid)})
		case dissect.SMB1NTCreateAndX, dissect.SMB1OpenAndX:
			if !ok {
				break
			}
			m.openResponse(h, cmd, op, req)
		case dissect.SMB1ReadAndX:
			if ok || h.Status == dissect.StatusBufferOverflow || h.Status == smb1DOSMoreData {
				m.readResponse(msg, h, cmd, op, req)
			}
		case dissect.SMB1Transaction2:
			if f := s.files[fileKey{uid, fid16(op.fid)}]; f != nil && ok {
				f.deleted = op.delete
			}
		case dissect.SMB1Close:
			if f := s.files[fileKey{uid, fid16(op.fid)}]; f != nil {
				s.closeFile(f, ok)
			}
		case dissect.SMB1Delete:
			if !ok {
				break
			}
			if tree := s.trees[treeKey{uid, uint32(req.tid)}]; tree != nil && !tree.ipc {
				s.fileOp(&smbFile{name: op.name, tree: tree, treeID: uint32(req.tid), session: uid, firstFrame: req.frame}, "delete", 0)
			}
		case dissect.SMB1LogoffAndX:
			if uid == 0 {
				uid = uint64(req.uid)
			}
			for k, f := range s.files {
				if k.session == uid {
					s.closeFile(f, false)
				}
			}
			if ok {
				s.logoff(uid)
			}
		}
	}
	if m.chain.Err() != nil {
		s.c.anomaly("smb1_bad_andx_chain")
	}
	if !keep {
		delete(m.pending, key)
	}
}

// shareType maps a TREE_CONNECT_ANDX response's service to an SMB2 share
// type (MS-CIFS 2.2.4.55.2).
func shareType(service string) uint8 {
	switch service {
	case "IPC":
		return dissect.ShareTypePipe
	case "LPT1:":
		return dissect.ShareTypePrint
	}
	return dissect.ShareTypeDisk
}

func (m *smb1State) setupResponse(msg []byte, h *dissect.SMB1Header, cmd *dissect.SMB1Command, op *smb1Op) {
	s := m.s
	ss := s.session(uint64(h.UID))
	if err := dissect.ParseSMB1SessionSetupResponse(msg, h, cmd, &m.setupR); err == nil && m.setupR.SecurityBlob != nil {
		m.setupToken(uint64(h.UID), m.setupR.SecurityBlob, false)
	}
	if h.Status != 0 || op.user == nil {
		return
	}
	if ss.user == nil {
		s.c.env.stats.SMBSessions++
	}
	ss.user = op.user
}

func (m *smb1State) openResponse(h *dissect.SMB1Header, cmd *dissect.SMB1Command, op *smb1Op, req *smb1Req) {
	s := m.s
	r := &m.createR
	var err error
	if cmd.Command == dissect.SMB1NTCreateAndX {
		err = dissect.ParseSMB1NTCreateResponse(cmd, r)
	} else {
		err = dissect.ParseSMB1OpenResponse(cmd, r)
	}
	if err != nil {
		s.c.anomaly("smb1_bad_create")
		return
	}
	// The response's TID, not the request's: a TREE_CONNECT_ANDX chained
	// before the open gets its TID only in the response.
	uid, tid := uint64(h.UID), uint32(h.TID)
	tree := s.trees[treeKey{uid, tid}]
	if tree == nil {
		s.c.anomaly("smb_tree_without_connect")
		if r.Pipe() {
			// Tree connected before the capture began: the resource
			// type still says pipe, and the tree is IPC$.
			tree = s.learnIPC(uid, tid)
		}
	}
	if old := s.files[fileKey{uid, fid16(r.FID)}]; old != nil {
		s.closeFile(old, false) // FID reused: its close was not seen
	}
	s.openFile(uid, fid16(r.FID), tid, tree, op.name, op.options, req.frame)
}

func (m *smb1State) readResponse(msg []byte, h *dissect.SMB1Header, cmd *dissect.SMB1Command, op *smb1Op, req *smb1Req) {
	s := m.s
	off, n, err := dissect.ParseSMB1ReadResponse(cmd)
	if err != nil {
		s.c.anomaly("smb1_bad_read")
		return
	}
	inside := off >= dissect.SMB1HeaderLen && off <= len(msg) && n <= len(msg)-off
	var data []byte
	if inside {
		data = msg[off : off+n]
	}
	f := s.file(uint64(h.UID), fid16(op.fid), uint32(req.tid), data)
	if f == nil {
		return
	}
	if f.pipe == nil {
		f.read += uint64(n)
		return
	}
	if !inside {
		s.c.anomaly("smb1_read_beyond_message")
		f.pipe.lost(1 - s.c.client)
		return
	}
	f.pipe.feed(1-s.c.client, data)
}

// transResponse feeds a TransactNmPipe response part into the pipe. It
// reports whether the request stays pending: after an interim response
// ("send the rest") and while response parts are still due.
func (m *smb1State) transResponse(msg []byte, h *dissect.SMB1Header, cmd *dissect.SMB1Command, req *smb1Req) bool {
	s := m.s
	if !req.transPipe {
		return false
	}
	if h.Status != 0 && h.Status != dissect.StatusBufferOverflow && h.Status != smb1DOSMoreData {
		return false
	}
	t := &m.trans
	interim, err := dissect.ParseSMB1TransResponse(msg, cmd, t)
	if err != nil {
		s.c.anomaly("smb1_bad_transaction")
		return false
	}
	if interim {
		return true
	}
	f := s.file(uint64(h.UID), fid16(req.transFID), uint32(req.tid), t.Data)
	if f == nil || f.pipe == nil {
		return false
	}
	if t.DataDisplacement != req.transOut {
		s.c.anomaly("smb1_transaction_out_of_order")
		f.pipe.lost(1 - s.c.client)
	}
	req.transOut = t.DataDisplacement + len(t.Data)
	f.pipe.feed(1-s.c.client, t.Data)
	return len(t.Data) > 0 && req.transOut < t.TotalDataCount
}

// partial handles the head of an SMB1 message too large to buffer: a
// WRITE_ANDX request or READ_ANDX response on a disk file is counted and
// its data skipped without copying; on a named pipe its data streams into
// the pipe's DCE-RPC framer as it arrives (pipestream.go), so that a PDU
// never hides in a message larger than --max-message.
func (m *smb1State) partial(dir int, msg []byte) bool {
	s := m.s
	h := &m.hdr
	if dissect.DecodeSMB1Header(msg, h) != nil {
		return false
	}
	m.chain.Start(msg, h)
	cmd := &m.cmd
	if !m.chain.Next(cmd) || m.chain.Err() != nil {
		return false
	}
	var next dissect.SMB1Command
	if m.chain.Next(&next) || m.chain.Err() != nil {
		return false // a chain's later blocks lie in the part not held
	}
	uid := uint64(h.UID)
	switch {
	case h.Command == dissect.SMB1WriteAndX && !h.Response():
		wr := &m.write
		if dissect.ParseSMB1WriteRequest(cmd, wr) != nil {
			return false
		}
		off, n := wr.DataOffset, wr.DataLength
		f := s.files[fileKey{uid, fid16(wr.FID)}]
		if f == nil && off >= dissect.SMB1HeaderLen && off < len(msg) {
			f = s.file(uid, fid16(wr.FID), uint32(h.TID), msg[off:])
		}
		if f == nil {
			return false
		}
		if f.pipe == nil {
			f.written += uint64(n)
			return true
		}
		if wr.WriteMode&(dissect.SMB1WriteRawMode|dissect.SMB1WriteMessageStart) == dissect.SMB1WriteRawMode|dissect.SMB1WriteMessageStart {
			// The message length in front is not pipe data (PipeData).
			off, n = off+2, n-2
		}
		if s.c.client < 0 {
			s.c.setClient(dir)
		}
		return s.pipeThroughAt(dissect.SMB1HeaderLen, dir, msg, off, n, f, s.c.client)
	case h.Command == dissect.SMB1ReadAndX && h.Response():
		key := smb1Key{h.PID, h.MID}
		req := m.pending[key]
		if req == nil || len(req.ops) != 1 || req.ops[0].cmd != dissect.SMB1ReadAndX {
			return false
		}
		f := s.files[fileKey{uid, fid16(req.ops[0].fid)}]
		if f == nil {
			return false
		}
		off, n, err := dissect.ParseSMB1ReadResponse(cmd)
		if err != nil {
			return false
		}
		if f.pipe == nil {
			delete(m.pending, key)
			f.read += uint64(n)
			return true
		}
		ok := h.Status == 0 || h.Status == dissect.StatusBufferOverflow || h.Status == smb1DOSMoreData
		if !ok || s.c.client < 0 {
			return false
		}
		delete(m.pending, key)
		return s.pipeThroughAt(dissect.SMB1HeaderLen, dir, msg, off, n, f, 1-s.c.client)
	}
	return false
}
