package sensor

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/dissect"
)

// maxContexts bounds presentation contexts remembered per channel.
const maxContexts = 256

// rpcChannel is one DCE-RPC association: a TCP connection (ncacn_ip_tcp) or
// one open named pipe (ncacn_np).
type rpcChannel struct {
	c         *conn
	transport string
	smb       *detect.SMBContext
	smbUser   func() *detect.Identity
	contexts  map[uint16]*presCtx
	// offered holds the contexts of binds awaiting their ack, by call id.
	offered map[uint32][]dissect.ContextElem
	calls   map[uint32]*rpcCall
	// callsPeak is the most calls held since calls was made: a Go map
	// keeps the room it grew to (see untrack).
	callsPeak int

	auth    rpcAuth
	hdr     dissect.DCERPCHeader
	trailer dissect.AuthTrailer
	req     dissect.RequestPDU
	resp    dissect.ResponsePDU
	scratch []byte
	// early holds responses that arrived before their request, as they do
	// when a gap held the request back in the reassembler.
	early      map[uint32][]heldPDU
	earlyBytes int
	// recent remembers the call ids of recent requests, tracked or not, so
	// that a response to a call of another interface is not taken for one
	// that came early.
	recent  [16]uint32
	nrecent int
	// noName is set once a call was reported on a pipe of unknown name.
	noName bool
	// age orders calls by arrival: the oldest is ended first when the
	// channel holds MaxCalls, without sorting them.
	age ageQueue
	// flood holds the open summaries of calls evicted unanswered (see
	// evictOldest), at most one per interface, oldest first.
	flood []*detect.Call
	// verdict remembers the last evicted request judged by floodable.
	verdict stubVerdict
}

// Bounds of responses held for their request.
const (
	maxEarlyPDUs  = 32
	maxEarlyBytes = 256 << 10
)

type presCtx struct {
	iface   dissect.Iface
	uuid    string
	version string
	syntax  dissect.Syntax
}

// rpcAuth is the channel's authentication: the auth type and level of its
// last bind, and the security contexts its tokens build, by auth_context_id
// (MS-RPCE 3.3.1.5.3: an association may hold several; each seals with its
// own keys and sequence).
type rpcAuth struct {
	typ, level uint8
	seen       bool
	ctxs       map[uint32]*secContext
	// last is the context that last saw a token: whose identity calls
	// carry.
	last *secContext
}

// maxSecContexts bounds the security contexts remembered per channel.
const maxSecContexts = 8

// context returns the security context of auth_context_id id, creating it
// for a token when create is set. A PDU naming an id no token set up goes
// to the last context: Impacket numbers auth_context_id after the
// presentation context (79231 + p_cont_id) while sealing every context's
// PDUs with its one security context.
func (a *rpcAuth) context(id uint32, create bool) *secContext {
	if sc := a.ctxs[id]; sc != nil {
		return sc
	}
	if !create {
		return a.last
	}
	if a.ctxs == nil || len(a.ctxs) >= maxSecContexts {
		a.ctxs = make(map[uint32]*secContext)
	}
	sc := newSecContext(fromRPCBind)
	a.ctxs[id] = sc
	return sc
}

// heldPDU is a response kept for its request. It was opened (or failed to
// open) on arrival: sealing follows wire order, not call order.
type heldPDU struct {
	pdu  []byte
	prot pduProtection
}

type rpcCall struct {
	call       *detect.Call
	drep       [4]byte
	req, resp  []byte
	reqDone    bool
	interested bool // stubs are kept (MS-TSCH or EPM)
	unresolved bool // context unknown when the call began (TCP, no bind)
	// A request stub past the limits keeps its end too (see stubcut.go).
	reqCut   bool
	reqTotal int
	reqTail  []byte
	joined   bool     // the request stub was joined from head and tail
	decoded  bool     // decode ran (floodable may run it before settle)
	scan     *xmlScan // the task XML dropped between head and tail (xmlscan.go)
	// stubQueued: in the worker's stubAge; stubGone: its stubs were
	// evicted for the stub budget, and no more are kept (stubage.go).
	stubQueued, stubGone bool
}

// stubBytes is what the call holds against Options.MaxStubTotal: its
// stubs, the kept request tail and the task XML kept from between.
func (rc *rpcCall) stubBytes() int {
	return len(rc.req) + len(rc.resp) + len(rc.reqTail) + rc.scan.held()
}

func newRPCChannel(c *conn, transport string, smb *detect.SMBContext) *rpcChannel {
	return &rpcChannel{c: c, transport: transport, smb: smb, contexts: make(map[uint16]*presCtx),
		offered: make(map[uint32][]dissect.ContextElem), calls: make(map[uint32]*rpcCall)}
}

// framer for pipe byte streams; TCP channels are framed by their conn.
func (r *rpcChannel) framing(b []byte) int          { return rpcFrame(b) }
func (r *rpcChannel) start(b []byte) int            { return rpcStart(b) }
func (r *rpcChannel) handle(dir int, msg []byte)    { r.pdu(dir, msg) }
func (r *rpcChannel) partial(int, []byte, int) bool { return false }
func (r *rpcChannel) anomaly(name string)           { r.c.anomaly(name) }
func (r *rpcChannel) maxMessage() int               { return r.c.env.opt.MaxMessage }
func (r *rpcChannel) budget() msgBudget             { return r.c.env.mem }
func (r *rpcChannel) setClientFrom(dir int, isClient bool) {
	if r.c.client < 0 {
		if isClient {
			r.c.setClient(dir)
		} else {
			r.c.setClient(1 - dir)
		}
	}
}

// pdu handles one complete PDU (exactly FragLen bytes).
func (r *rpcChannel) pdu(dir int, b []byte) {
	h := &r.hdr
	if ok, _ := dissect.PeekDCERPC(b, h); !ok || int(h.FragLen) != len(b) {
		r.c.anomaly("dcerpc_bad_header")
		return
	}
	r.c.env.stats.RPCPDUs++
	if _, err := dissect.ParseAuthTrailer(b, h, &r.trailer); err != nil {
		r.c.anomaly("dcerpc_bad_auth_trailer")
		return
	}
	switch h.PType {
	case dissect.PTypeBind, dissect.PTypeAlterContext:
		r.setClientFrom(dir, true)
		r.bind(b)
	case dissect.PTypeBindAck, dissect.PTypeAlterCtxResp:
		r.setClientFrom(dir, false)
		r.bindAck(b)
	case dissect.PTypeBindNak:
		delete(r.offered, h.CallID)
	case dissect.PTypeAuth3:
		r.setClientFrom(dir, true)
		r.authToken(true)
	case dissect.PTypeRequest:
		r.setClientFrom(dir, true)
		b, prot := r.protect(b, true)
		r.request(b, prot)
	case dissect.PTypeResponse, dissect.PTypeFault:
		r.setClientFrom(dir, false)
		b, prot := r.protect(b, false)
		r.response(b, prot)
	}
}

func (r *rpcChannel) bind(b []byte) {
	ctxs, err := dissect.ParseBind(b, &r.hdr, nil)
	if err != nil {
		r.c.anomaly("dcerpc_bad_bind")
		return
	}
	if len(r.offered) >= 16 {
		r.offered = make(map[uint32][]dissect.ContextElem)
	}
	r.offered[r.hdr.CallID] = ctxs
	if r.trailer.Value != nil {
		r.auth.typ, r.auth.level, r.auth.seen = r.trailer.Type, r.trailer.Level, true
		r.authToken(true)
	}
}

func (r *rpcChannel) bindAck(b []byte) {
	res, err := dissect.ParseBindAck(b, &r.hdr, nil)
	if err != nil {
		r.c.anomaly("dcerpc_bad_bind_ack")
		return
	}
	// Mid-stream pipes (CREATE not captured) learn their name from the
	// bind_ack's secondary address.
	if r.smb != nil && r.smb.Pipe == "" && r.hdr.PType == dissect.PTypeBindAck {
		if a := dissect.BindAckSecAddr(b, &r.hdr); a != "" {
			r.smb.Pipe = pipeName(a)
		}
	}
	offered := r.offered[r.hdr.CallID]
	delete(r.offered, r.hdr.CallID)
	for i, e := range offered {
		if i >= len(res) {
			break
		}
		if res[i].Result != 0 {
			continue
		}
		if len(r.contexts) >= maxContexts {
			r.c.anomaly("dcerpc_too_many_contexts")
			break
		}
		iface := dissect.IfaceByUUID(e.AbstractUUID, e.AbstractMajor)
		pc := &presCtx{iface: iface, uuid: e.AbstractUUID, version: fmt.Sprintf("%d.%d", e.AbstractMajor, e.AbstractMinor),
			syntax: dissect.SyntaxByUUID(res[i].Syntax)}
		r.contexts[e.ID] = pc
		name := iface.String()
		if name == "" {
			name = dissect.InterfaceName(e.AbstractUUID)
		}
		if name == "" {
			name = e.AbstractUUID
		}
		r.c.env.stats.Binds[name]++
	}
	if r.trailer.Value != nil {
		r.authToken(false)
	}
}

// authToken hands the token of a bind, bind_ack, alter_context(_resp) or
// auth3 to the channel's security context.
func (r *rpcChannel) authToken(fromClient bool) {
	if len(r.trailer.Value) == 0 {
		return
	}
	sc := r.auth.context(r.trailer.ContextID, true)
	env := r.c.authEnv()
	sc.token(r.trailer.Value, fromClient, env)
	sc.establish(env, "ntlm_wrong_credentials")
	r.auth.last = sc
}

func (r *rpcChannel) pipeIsAtsvc() bool {
	if r.smb == nil {
		return false
	}
	return strings.EqualFold(r.smb.Pipe, "atsvc")
}

// context returns the presentation context of id, consulting the endpoint
// mapper table for TCP channels whose bind was not captured.
func (r *rpcChannel) context(id uint16) *presCtx {
	if pc := r.contexts[id]; pc != nil {
		return pc
	}
	if r.transport != detect.TransportTCP || len(r.contexts) > 0 {
		return nil
	}
	ep := r.c.endpoints()
	iface, uuid, ok := r.c.env.epm.Lookup(ep.Server, ep.ServerPort, r.c.ci.Timestamp)
	if !ok || iface == dissect.IfaceUnknown {
		return nil
	}
	pc := &presCtx{iface: iface, uuid: uuid, version: "1.0"}
	r.contexts[id] = pc
	return pc
}

func (r *rpcChannel) request(b []byte, prot pduProtection) {
	h := &r.hdr
	closed := prot.sealed && !prot.opened
	if err := dissect.ParseRequest(b, h, &r.trailer, closed, &r.req); err != nil {
		r.c.anomaly("dcerpc_bad_request")
		return
	}
	seen := r.seenRequest(h.CallID)
	if !seen {
		r.recent[r.nrecent%len(r.recent)] = h.CallID
		r.nrecent++
	}
	pc := r.context(r.req.ContextID)
	first := h.Flags&dissect.PFCFirstFrag != 0
	rc := r.calls[h.CallID]
	if rc == nil || first && rc.reqDone {
		if rc != nil {
			r.finish(rc) // a call id reused before its response came
		}
		if !first && !seen {
			// Mid-stream: the call's first fragments were not captured.
			r.c.anomaly("dcerpc_request_without_first_fragment")
		}
		rc = r.newCall(pc, r.req.ContextID, r.req.Opnum)
		if rc == nil {
			return
		}
		r.admitCall(rc)
	}
	call := rc.call
	call.RequestFragments++
	call.RequestStubLen += len(r.req.Stub)
	call.Frames = appendFrame(call.Frames, r.c.frame)
	r.protection(call, prot)
	if rc.interested && !closed {
		r.appendRequestStub(rc, r.req.Stub, call)
	}
	if h.Flags&dissect.PFCLastFrag != 0 {
		rc.reqDone = true
		r.replayEarly(h.CallID)
	}
}

// protection records on a call what became of one of its PDUs' sealing.
func (r *rpcChannel) protection(call *detect.Call, prot pduProtection) {
	if !prot.sealed {
		return
	}
	call.Encrypted = true
	if prot.opened {
		call.Decrypted = true
	} else if prot.err != "" {
		call.DecryptError = prot.err
	}
}

func (r *rpcChannel) seenRequest(id uint32) bool {
	for i := 0; i < min(r.nrecent, len(r.recent)); i++ {
		if r.recent[i] == id {
			return true
		}
	}
	return false
}

// holdEarly keeps a copy of a response whose request has not been seen.
func (r *rpcChannel) holdEarly(b []byte, prot pduProtection) {
	n := 0
	for _, v := range r.early {
		n += len(v)
	}
	if n >= maxEarlyPDUs || r.earlyBytes+len(b) > maxEarlyBytes {
		r.c.anomaly("dcerpc_response_without_request")
		return
	}
	if r.early == nil {
		r.early = make(map[uint32][]heldPDU)
	}
	r.early[r.hdr.CallID] = append(r.early[r.hdr.CallID], heldPDU{pdu: append([]byte(nil), b...), prot: prot})
	r.earlyBytes += len(b)
}

// replayEarly hands held responses of a call to it now that its request is
// complete.
func (r *rpcChannel) replayEarly(callID uint32) {
	pdus := r.early[callID]
	if len(pdus) == 0 {
		return
	}
	delete(r.early, callID)
	for _, p := range pdus {
		r.earlyBytes -= len(p.pdu)
		// Counted and opened when it arrived: only the call's part is left.
		if ok, _ := dissect.PeekDCERPC(p.pdu, &r.hdr); !ok {
			continue
		}
		if _, err := dissect.ParseAuthTrailer(p.pdu, &r.hdr, &r.trailer); err != nil {
			continue
		}
		r.response(p.pdu, p.prot)
	}
}

func appendFrame(f []uint64, n uint64) []uint64 {
	if len(f) > 0 && f[len(f)-1] == n || len(f) >= 64 {
		return f
	}
	return append(f, n)
}

func (r *rpcChannel) appendStub(rc *rpcCall, dst, stub []byte) []byte {
	env := r.c.env
	call := rc.call
	if rc.stubGone {
		return dst
	}
	tooLarge := len(dst)+len(stub) > env.opt.MaxStub
	if !tooLarge && *env.stubBytes+len(stub) > env.opt.MaxStubTotal {
		r.makeStubRoom(rc, len(stub))
	}
	if tooLarge || *env.stubBytes+len(stub) > env.opt.MaxStubTotal {
		if !call.Truncated {
			call.Truncated = true
			if tooLarge {
				r.c.anomaly("dcerpc_stub_too_large")
			} else {
				r.c.anomaly("dcerpc_stub_budget_exhausted")
			}
		}
		return dst
	}
	*env.stubBytes += len(stub)
	if len(stub) > 0 && !rc.stubQueued {
		rc.stubQueued = true
		env.stubAge.push(r, call.CallID, call.Seq)
	}
	return append(dst, stub...)
}

// appendRequestStub keeps a request's stub up to the limits, and past them
// its last stubTail bytes.
func (r *rpcChannel) appendRequestStub(rc *rpcCall, stub []byte, call *detect.Call) {
	rc.reqTotal += len(stub)
	if rc.stubGone {
		return
	}
	if !rc.reqCut {
		n := len(rc.req)
		rc.req = r.appendStub(rc, rc.req, stub)
		if len(rc.req) > n || len(stub) == 0 {
			return
		}
		rc.reqCut = true
		rc.scan = newRegisterScan(call.Iface, call.Opnum, call.Syntax, rc.drep, rc.req)
	}
	t := len(rc.reqTail) + rc.scan.held()
	rc.reqTail = keepTail(rc.reqTail, stub, rc.scan)
	*r.c.env.stubBytes += len(rc.reqTail) + rc.scan.held() - t
}

func (r *rpcChannel) newCall(pc *presCtx, ctxID, opnum uint16) *rpcCall {
	iface := dissect.IfaceUnknown
	if pc != nil {
		iface = pc.iface
	}
	interested := iface.Decoded()
	// A TCP channel caught without its bind may still be named by the
	// endpoint mapper, whose answer another worker may not have learnt yet:
	// keep the call and look again when it finishes.
	unresolved := pc == nil && r.transport == detect.TransportTCP && len(r.contexts) == 0 && len(r.offered) == 0
	if pc == nil && !unresolved {
		// The bind naming this context was not captured: the interface
		// stays unknown (never guessed from the opnum).
		r.c.anomaly("dcerpc_call_without_bind")
	}
	if !interested && !unresolved && !(pc == nil && r.pipeIsAtsvc()) {
		return nil // calls of other interfaces are only counted
	}
	if len(r.calls) >= r.c.env.opt.MaxCalls {
		r.c.anomaly("dcerpc_too_many_calls")
		r.evictOldest()
	}
	ep := r.c.endpoints()
	call := &detect.Call{
		Time:      r.c.ci.Timestamp,
		Endpoints: ep,
		Transport: r.transport,
		Iface:     iface,
		Opnum:     opnum,
		CallID:    r.hdr.CallID,
		ContextID: ctxID,
		PcapFile:  *r.c.env.file,
		Seq:       r.c.env.seq.nextSeq(),
	}
	if r.smb != nil {
		s := *r.smb
		call.SMB = &s
		if s.Pipe == "" && !r.noName {
			// Neither the CREATE nor a bind_ack named the pipe: rules
			// that need its name (atexec: \pipe\atsvc) cannot apply.
			r.noName = true
			r.c.anomaly("smb_pipe_name_unknown")
		}
	}
	if pc != nil {
		call.IfaceUUID, call.IfaceVersion, call.Syntax = pc.uuid, pc.version, pc.syntax
	}
	if r.trailer.Value != nil {
		call.HasAuth, call.AuthType, call.AuthLevel = true, r.trailer.Type, r.trailer.Level
	} else if r.auth.seen {
		call.HasAuth, call.AuthType, call.AuthLevel = true, r.auth.typ, r.auth.level
	}
	rc := &rpcCall{call: call, drep: r.hdr.DRep, interested: interested || unresolved, unresolved: unresolved}
	r.calls[r.hdr.CallID] = rc
	r.callsPeak = max(r.callsPeak, len(r.calls))
	r.age.push(uint64(r.hdr.CallID), call.Seq)
	r.age.compact(len(r.calls), r.callLive)
	return rc
}

func (r *rpcChannel) response(b []byte, prot pduProtection) {
	h := &r.hdr
	rc := r.calls[h.CallID]
	if rc == nil {
		if !r.seenRequest(h.CallID) {
			r.holdEarly(b, prot)
		}
		return
	}
	call := rc.call
	closed := prot.sealed && !prot.opened
	if err := dissect.ParseResponse(b, h, &r.trailer, closed, &r.resp); err != nil {
		r.c.anomaly("dcerpc_bad_response")
		return
	}
	if call.ResponseFragments == 0 {
		call.ResponseTime = r.c.ci.Timestamp
	}
	call.ResponseFragments++
	call.Frames = appendFrame(call.Frames, r.c.frame)
	if h.PType == dissect.PTypeFault {
		st := r.resp.Status
		call.Fault = &st
		call.Responded = true
		r.finish(rc)
		return
	}
	call.ResponseStubLen += len(r.resp.Stub)
	r.protection(call, prot)
	if rc.interested && !closed {
		rc.resp = r.appendStub(rc, rc.resp, r.resp.Stub)
	}
	if h.Flags&dissect.PFCLastFrag != 0 {
		call.Responded = true
		r.finish(rc)
	}
}

// finish decodes a call's stubs and hands it on.
func (r *rpcChannel) finish(rc *rpcCall) {
	if r.settle(rc) {
		r.record(rc.call)
	}
}

// untrack takes a call off the channel. A channel that held many calls at
// once (a flood, or a client that pipelines) and holds none now gets a new
// map and age queue: Go maps keep the room they grew to, and thousands of
// quiet channels each keeping room for MaxCalls calls held hundreds of MB.
func (r *rpcChannel) untrack(rc *rpcCall) {
	if r.calls[rc.call.CallID] == rc {
		delete(r.calls, rc.call.CallID)
	}
	if len(r.calls) == 0 && r.callsPeak > callsKeptRoom {
		r.calls, r.age, r.callsPeak = make(map[uint32]*rpcCall), ageQueue{}, 0
	}
}

// callsKeptRoom is how many calls' room an empty channel may keep.
const callsKeptRoom = 16

// record hands on a finished call.
func (r *rpcChannel) record(call *detect.Call) {
	r.c.env.stats.TschCalls++
	if call.Flood != nil {
		r.c.env.stats.TschCalls += uint64(call.Flood.Calls - 1)
		r.c.env.stats.TschSummarised += uint64(call.Flood.Calls - 1)
	}
	r.hand(call)
}

// hand keys a call, tells it from equal ones of the connection, and hands
// it on.
func (r *rpcChannel) hand(call *detect.Call) {
	call.Key = detect.CallKey(call)
	call.Dup = r.c.disambiguate(call.Key)
	r.c.env.rec.Call(call)
}

// settle takes a call off the channel, its stubs out of the budget, and
// decodes them; it says whether the call is to be recorded (false: it was
// recorded unresolved, learnt from, or dropped).
func (r *rpcChannel) settle(rc *rpcCall) bool {
	call := rc.call
	r.untrack(rc)
	// The stubs leave the worker's budget here, decoded or handed on.
	*r.c.env.stubBytes -= rc.stubBytes()
	if rc.reqCut {
		r.compact(rc)
	}
	if rc.unresolved {
		pc := r.context(call.ContextID)
		if pc == nil {
			// Another worker may learn the port from the endpoint mapper
			// later: the resolver in front of the detector decides.
			if _, ok := r.c.env.rec.(EPMRecorder); ok {
				call.Unresolved = true
				// Sealed stubs cannot be decoded; the operation still can
				// be named once the interface is.
				if !call.Encrypted || call.Decrypted {
					call.Stubs = &detect.RawStubs{Request: rc.req, Response: rc.resp, DRep: rc.drep}
				}
				r.hand(call)
				return false
			}
			r.c.anomaly("dcerpc_call_unknown_context")
			r.c.env.seq.dropSeq(call.Seq)
			return false
		}
		if !pc.iface.Decoded() {
			r.c.env.seq.dropSeq(call.Seq)
			return false
		}
		call.Iface, call.IfaceUUID, call.IfaceVersion, call.Syntax = pc.iface, pc.uuid, pc.version, pc.syntax
	}
	if call.User == nil {
		if r.auth.last != nil {
			call.User = r.auth.last.identity()
		}
		if call.User == nil && r.smbUser != nil {
			call.User = r.smbUser()
		}
	}
	if rc.interested && call.Iface == dissect.IfaceEPM {
		r.learnEPM(rc)
		r.c.env.seq.dropSeq(call.Seq)
		return false
	}
	if rc.interested && !rc.decoded && (!call.Encrypted || call.Decrypted) {
		r.decode(rc)
	}
	return true
}

// compact joins a cut request stub's head and tail where the operation's
// layout allows (see stubcut.go).
func (r *rpcChannel) compact(rc *rpcCall) {
	iface, syn := rc.call.Iface, rc.call.Syntax
	if rc.unresolved {
		if pc := r.context(rc.call.ContextID); pc != nil {
			iface, syn = pc.iface, pc.syntax
		}
	}
	if s := compactStub(iface, rc.call.Opnum, syn, rc.drep, rc.req, rc.reqTail, rc.reqTotal, rc.scan); s != nil {
		rc.req = s
		rc.joined = true
	}
	if rc.scan != nil && rc.scan.full {
		// Elements of the XML's middle past the bound are not reported.
		r.c.anomaly("tsch_task_xml_scan_truncated")
	}
	rc.reqTail, rc.scan = nil, nil
}

// decode runs the MS-TSCH stub decoders on a finished call.
func (r *rpcChannel) decode(rc *rpcCall) error {
	rc.decoded = true
	err := decodeCall(r.c.env.opt.Tsch, rc.call, rc.req, rc.resp, rc.drep)
	if err != nil {
		r.c.anomaly("tsch_stub_decode_error")
	}
	if xmlMalformed(rc.call) {
		// Task XML that needed repairs to be read.
		r.c.anomaly("tsch_task_xml_malformed")
	}
	if t := rc.call.Tsch; t != nil && t.Task != nil && (rc.joined || t.Task.XMLTruncated) {
		// A definition past --max-xml: padding is how a task hides.
		t.Task.XMLOversized = true
		if rc.joined {
			// The digest would be of the joined string, not of what was sent.
			t.Task.XMLSHA256 = ""
		}
		r.c.anomaly("tsch_task_xml_oversized")
	}
	return err
}

func xmlMalformed(c *detect.Call) bool {
	return c.Tsch != nil && c.Tsch.Task != nil && c.Tsch.Task.XMLMalformed
}

// decodeCall decodes a call's stubs into call.Tsch; a call whose transfer
// syntax is unknown (context named by the endpoint mapper) tries NDR, then
// NDR64.
func decodeCall(opt dissect.TschOptions, call *detect.Call, req, resp []byte, drep [4]byte) error {
	syntaxes := []dissect.Syntax{call.Syntax}
	if call.Syntax == dissect.SyntaxUnknown {
		syntaxes = []dissect.Syntax{dissect.SyntaxNDR, dissect.SyntaxNDR64}
	}
	var lastErr error
	for _, syn := range syntaxes {
		info := &dissect.TschInfo{}
		var err error
		if req != nil || call.RequestFragments > 0 {
			err = opt.DecodeRequest(call.Iface, call.Opnum, req, syn, drep, info)
		}
		if err == nil && call.Responded && call.Fault == nil {
			err = opt.DecodeResponse(call.Iface, call.Opnum, resp, syn, drep, info)
		}
		call.Tsch = info
		if err == nil {
			call.Syntax = syn
			call.DecodeError = ""
			return nil
		}
		lastErr = err
	}
	// The outcome must not depend on the request: a request cut or
	// malformed still has its response decoded.
	if call.Responded && call.Fault == nil && len(resp) > 0 {
		for _, syn := range syntaxes {
			info := &dissect.TschInfo{}
			if opt.DecodeResponse(call.Iface, call.Opnum, resp, syn, drep, info) == nil {
				info.DecodeError = "request: " + lastErr.Error()
				call.Tsch = info
				break
			}
		}
	}
	call.DecodeError = lastErr.Error()
	return lastErr
}

func (r *rpcChannel) learnEPM(rc *rpcCall) {
	if rc.call.Encrypted && !rc.call.Decrypted || !rc.call.Responded {
		return
	}
	syn := rc.call.Syntax
	if syn == dissect.SyntaxUnknown {
		syn = dissect.SyntaxNDR
	}
	var decode func(req, resp []byte, syn dissect.Syntax, drep [4]byte) ([]dissect.Endpoint, error)
	switch dissect.OpOf(rc.call.Iface, rc.call.Opnum) {
	case dissect.OpEptMap:
		decode = dissect.DecodeEPMMap
	case dissect.OpEptLookup:
		decode = dissect.DecodeEPMLookup
	default:
		return
	}
	eps, err := decode(rc.req, rc.resp, syn, rc.drep)
	if err != nil {
		r.c.anomaly("epm_decode_error")
	}
	server := r.c.endpoints().Server
	for _, e := range eps {
		if e.Protocol != "ncacn_ip_tcp" || e.Port == 0 {
			continue
		}
		addr := e.Addr
		if !addr.IsValid() || addr.IsUnspecified() {
			addr = server
		}
		r.c.env.epm.Learn(addr, e.Port, e.Interface, r.c.ci.Timestamp)
		if er, ok := r.c.env.rec.(EPMRecorder); ok {
			er.EPM(addr, e.Port, e.Interface, r.c.ci.Timestamp)
		}
	}
}

func (r *rpcChannel) callLive(id, seq uint64) bool {
	rc := r.calls[uint32(id)]
	return rc != nil && rc.call.Seq == seq
}

// oldest returns the call that came first, nil when there is none.
func (r *rpcChannel) oldest() *rpcCall {
	if id, ok := r.age.oldest(r.callLive); ok {
		return r.calls[uint32(id)]
	}
	// Every call is queued when it begins; this is a safety net.
	ids := make([]uint32, 0, len(r.calls))
	for id := range r.calls {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return r.calls[ids[i]].call.Seq < r.calls[ids[j]].call.Seq })
	if len(ids) > 0 {
		return r.calls[ids[0]]
	}
	return nil
}

// finishOldest ends the call that came first.
func (r *rpcChannel) finishOldest() {
	if rc := r.oldest(); rc != nil {
		r.finish(rc)
	}
}

// floodWindow is the capture time one flood summary covers (see
// evictOldest): a flood that goes on gives one record per window, so that a
// live SIEM hears of it while it lasts.
const floodWindow = time.Second

// evictOldest makes room for a call on a channel that holds MaxCalls
// calls awaiting their response: no client waits for that many, so the
// channel is flooded (or its responses are not captured). The oldest call
// ends unanswered. When its operation changes nothing on the server (it
// reads, or the interface has no such opnum: the server rejects it), or
// nothing but its opnum is known (floodable), it is not reported as a
// record of its own: it joins the channel's summary of
// such calls — the first one's record, with the count, the opnums, the last
// call and the totals of fragments and stub bytes — so that requests that
// are never answered cannot turn into a flood of events and slow the sensor
// down to the attacker's pace. One summary per channel and interface,
// whatever the operations, so that cycling through them gains nothing.
// Calls that change tasks, jobs, folders, accounts or security are always
// reported one by one.
func (r *rpcChannel) evictOldest() {
	rc := r.oldest()
	if rc == nil {
		return
	}
	call := rc.call
	if !r.floodable(rc) {
		r.finish(rc)
		return
	}
	for i, s := range r.flood {
		if s.Iface != call.Iface {
			continue
		}
		if call.Time.Sub(s.Time) < floodWindow {
			r.joinFlood(s, rc)
			return
		}
		r.endFlood(i)
		break
	}
	if !r.settle(rc) {
		return
	}
	call.Flood = &detect.FloodSummary{Calls: 1, Last: call.Time, LastCallID: call.CallID, Opnums: []uint16{call.Opnum}}
	r.flood = append(r.flood, call)
}

// floodable says whether a call ended unanswered may join a flood summary:
// its operation changes nothing; or its request is no valid encoding of the
// operation's parameters, which the server's stub refuses before the
// operation runs (MS-RPCE 3.3.3.5: a fault, nca_s_fault_ndr or
// rpc_x_bad_stub_data); or its interface is unknown (a context whose bind
// was not captured, on \pipe\atsvc), so that the summary's opnums say all its
// own event would have. A request cut by the sensor's own bounds, sealed
// and not opened, or refused by a bound of the decoder rather than by its
// encoding may have been valid: it stays an event of its own.
func (r *rpcChannel) floodable(rc *rpcCall) bool {
	call := rc.call
	switch {
	case rc.unresolved || call.ResponseFragments > 0:
		return false
	case call.Iface == dissect.IfaceUnknown:
		return true
	case !rc.interested || call.Iface == dissect.IfaceEPM:
		return false
	case dissect.OpOf(call.Iface, call.Opnum).ChangesNothing():
		return true
	case !rc.reqDone || rc.reqCut || call.Truncated || call.Encrypted && !call.Decrypted:
		return false
	}
	// A flood repeats its request: the verdict on the last stub judged
	// here stands for the same bytes, which saves decoding each copy.
	v := &r.verdict
	if v.set && v.iface == call.Iface && v.opnum == call.Opnum && v.syntax == call.Syntax && v.drep == rc.drep &&
		bytes.Equal(v.stub, rc.req) {
		return v.malformed
	}
	err := r.decode(rc)
	bad := err != nil && !errors.Is(err, dissect.ErrLimit)
	if len(rc.req) <= maxVerdictStub {
		*v = stubVerdict{set: true, iface: call.Iface, opnum: call.Opnum, syntax: call.Syntax, drep: rc.drep,
			stub: append(v.stub[:0], rc.req...), malformed: bad}
	}
	return bad
}

// maxVerdictStub bounds the request stub floodable remembers its verdict on.
const maxVerdictStub = 256

// stubVerdict is whether a request stub failed to decode (rpcChannel.floodable).
type stubVerdict struct {
	set       bool
	iface     dissect.Iface
	opnum     uint16
	syntax    dissect.Syntax
	drep      [4]byte
	stub      []byte
	malformed bool
}

// joinFlood counts an evicted call into summary s; the call itself is not
// reported.
func (r *rpcChannel) joinFlood(s *detect.Call, rc *rpcCall) {
	call := rc.call
	r.untrack(rc)
	*r.c.env.stubBytes -= rc.stubBytes()
	r.c.env.seq.dropSeq(call.Seq)
	f := s.Flood
	f.Calls++
	f.LastCallID = call.CallID
	if call.Time.After(f.Last) {
		f.Last = call.Time
	}
	f.AddOpnum(call.Opnum)
	s.RequestFragments += call.RequestFragments
	s.RequestStubLen += call.RequestStubLen
	s.Truncated = s.Truncated || call.Truncated
	for _, fr := range call.Frames {
		s.Frames = appendFrame(s.Frames, fr)
	}
}

// endFlood reports the summary flood[i]; one that gathered a single call
// is that call's ordinary record.
func (r *rpcChannel) endFlood(i int) {
	s := r.flood[i]
	r.flood = append(r.flood[:i], r.flood[i+1:]...)
	if s.Flood.Calls == 1 {
		s.Flood = nil
	}
	r.record(s)
}

// discard forgets the channel's calls without reporting them: what was
// taken for a pipe turned out to be a file.
func (r *rpcChannel) discard() {
	for id, rc := range r.calls {
		*r.c.env.stubBytes -= rc.stubBytes()
		r.c.env.seq.dropSeq(rc.call.Seq)
		delete(r.calls, id)
	}
	r.early, r.earlyBytes = nil, 0
	for _, s := range r.flood {
		r.c.env.seq.dropSeq(s.Seq)
	}
	r.flood = nil
}

// close reports calls still waiting for their response (outcome unknown).
func (r *rpcChannel) close() {
	for id, pdus := range r.early {
		for range pdus {
			r.c.anomaly("dcerpc_response_without_request")
		}
		delete(r.early, id)
	}
	for len(r.flood) > 0 {
		r.endFlood(0)
	}
	for len(r.calls) > 0 {
		r.finishOldest()
	}
}
