package detect

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tschsensor/tschsensor/dissect"
)

// Event is one output line: a decoded call ("event"), an alert or a metric,
// shaped after ECS so that SIEMs map it without glue. docs/events.md lists
// every field; docs/event.schema.json is what the tests validate against.
type Event struct {
	Timestamp   string        `json:"@timestamp"`
	Event       EventMeta     `json:"event"`
	Observer    Observer      `json:"observer"`
	Source      *Endpoint     `json:"source,omitempty"`
	Destination *Endpoint     `json:"destination,omitempty"`
	Network     *Network      `json:"network,omitempty"`
	User        *User         `json:"user,omitempty"`
	Rule        *RuleMeta     `json:"rule,omitempty"`
	Threat      *Threat       `json:"threat,omitempty"`
	SMB         *SMBFields    `json:"smb,omitempty"`
	DCERPC      *DCERPCFields `json:"dcerpc,omitempty"`
	Tsch        any           `json:"tsch,omitempty"`
	File        *FileFields   `json:"file,omitempty"`
	AtExec      *AtExecFields `json:"atexec,omitempty"`
	Related     *Related      `json:"related,omitempty"`
	Pcap        *Pcap         `json:"pcap,omitempty"`
	Metric      any           `json:"metric,omitempty"`
	// Tags are a custom rule's tags (ECS tags).
	Tags []string `json:"tags,omitempty"`
}

// EventMeta is the ECS "event" object.
type EventMeta struct {
	Kind     string   `json:"kind"`
	ID       string   `json:"id"`
	Category []string `json:"category,omitempty"`
	Type     []string `json:"type,omitempty"`
	Action   string   `json:"action,omitempty"`
	Outcome  string   `json:"outcome,omitempty"`
	Severity int      `json:"severity,omitempty"`
	Dataset  string   `json:"dataset"`
	Reason   string   `json:"reason,omitempty"`
	Start    string   `json:"start,omitempty"`
	End      string   `json:"end,omitempty"`
}

// Observer names the sensor.
type Observer struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Product string `json:"product"`
}

// Endpoint is ECS source/destination.
type Endpoint struct {
	IP      string `json:"ip"`
	Port    uint16 `json:"port,omitempty"`
	Domain  string `json:"domain,omitempty"`
	Address string `json:"address,omitempty"`
}

// Network is ECS network.
type Network struct {
	Transport string `json:"transport"`
	Protocol  string `json:"protocol,omitempty"`
	VLAN      *VLAN  `json:"vlan,omitempty"`
}

// VLAN is the outer 802.1Q tag.
type VLAN struct {
	ID uint16 `json:"id"`
}

// User is ECS user plus how it was learnt.
type User struct {
	Name          string `json:"name,omitempty"`
	Domain        string `json:"domain,omitempty"`
	Authenticator string `json:"authentication,omitempty"`
	Source        string `json:"source,omitempty"`
	Realm         string `json:"kerberos_realm,omitempty"`
	SPN           string `json:"service_principal,omitempty"`
	Note          string `json:"note,omitempty"`
}

// RuleMeta is ECS rule for alerts.
type RuleMeta struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Reference   string `json:"reference,omitempty"`
	Ruleset     string `json:"ruleset"`
}

// Threat is the MITRE ATT&CK mapping.
type Threat struct {
	Framework string          `json:"framework"`
	Technique ThreatTechnique `json:"technique"`
	Tactic    ThreatTactic    `json:"tactic"`
}

// ThreatTechnique is an ATT&CK technique (or sub-technique).
type ThreatTechnique struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Reference string `json:"reference,omitempty"`
}

// ThreatTactic is an ATT&CK tactic.
type ThreatTactic struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// SMBFields locates a call or file operation within SMB.
type SMBFields struct {
	Version   int    `json:"version"`
	Dialect   string `json:"dialect,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Tree      string `json:"tree,omitempty"`
	Pipe      string `json:"pipe,omitempty"`
	FileID    string `json:"file_id,omitempty"`
	Signed    bool   `json:"signed,omitempty"`
}

// DCERPCFields describes the RPC call.
type DCERPCFields struct {
	Interface      DCERPCInterface `json:"interface"`
	Operation      string          `json:"operation,omitempty"`
	Opnum          uint16          `json:"opnum"`
	CallID         uint32          `json:"call_id"`
	ContextID      uint16          `json:"context_id"`
	Transport      string          `json:"transport"`
	TransferSyntax string          `json:"transfer_syntax,omitempty"`
	Auth           *DCERPCAuth     `json:"auth,omitempty"`
	Encrypted      bool            `json:"encrypted"`
	Decrypted      bool            `json:"decrypted"`
	DecryptError   string          `json:"decrypt_error,omitempty"`
	Fragments      Pair            `json:"fragments"`
	StubLength     Pair            `json:"stub_length"`
	Truncated      bool            `json:"truncated,omitempty"`
	Responded      bool            `json:"responded"`
	Fault          string          `json:"fault,omitempty"`
	FaultCode      *uint32         `json:"fault_code,omitempty"`
	DecodeError    string          `json:"decode_error,omitempty"`
	Flood          *DCERPCFlood    `json:"flood,omitempty"`
}

// DCERPCFlood marks an event that stands for several unanswered calls
// (FloodSummary): their number, the last one's call id and their opnums.
// The event's other fields are the first call's, except fragments and
// stub_length (totals over the calls) and event.end (the last request).
type DCERPCFlood struct {
	Calls      int      `json:"calls"`
	LastCallID uint32   `json:"last_call_id"`
	Opnums     []uint16 `json:"opnums"`
}

// DCERPCInterface names the interface a call's presentation context bound.
type DCERPCInterface struct {
	Name    string `json:"name"`
	UUID    string `json:"uuid,omitempty"`
	Version string `json:"version,omitempty"`
}

// DCERPCAuth is the call's auth verifier.
type DCERPCAuth struct {
	Type    string `json:"type"`
	TypeID  uint8  `json:"type_id"`
	Level   string `json:"level"`
	LevelID uint8  `json:"level_id"`
}

// Pair holds a request and a response figure.
type Pair struct {
	Request  int `json:"request"`
	Response int `json:"response"`
}

// FileFields is ECS file for SMB file operations in alerts.
type FileFields struct {
	Path      string `json:"path"`
	Name      string `json:"name,omitempty"`
	Directory string `json:"directory,omitempty"`
	Share     string `json:"share,omitempty"`
	BytesRead uint64 `json:"bytes_read,omitempty"`
	Deleted   bool   `json:"deleted,omitempty"`
}

// AtExecFields says how much of the AtExec chain was seen.
type AtExecFields struct {
	OutputRead  bool   `json:"output_read"`
	OutputFile  string `json:"output_file,omitempty"`
	TaskDeleted bool   `json:"task_deleted"`
	Polled      bool   `json:"polled"`
	Sealed      bool   `json:"sealed"`
}

// Related links an alert to the events behind it.
type Related struct {
	Events []string `json:"events,omitempty"`
	IP     []string `json:"ip,omitempty"`
	User   []string `json:"user,omitempty"`
}

// Pcap locates a record in the replayed file.
type Pcap struct {
	File   string   `json:"file"`
	Frames []uint64 `json:"frames,omitempty"`
}

// Subject returns the record's subject below the sink prefix.
func (e *Event) Subject() string { return string(e.AppendSubject(make([]byte, 0, 64))) }

// AppendSubject appends the record's subject below the sink prefix.
func (e *Event) AppendSubject(b []byte) []byte {
	switch e.Event.Kind {
	case "alert":
		if e.Rule != nil {
			return append(append(b, "alert."...), e.Rule.ID...)
		}
		return append(b, "alert.unknown"...)
	case "metric":
		return append(b, "stats"...)
	}
	b = append(b, "event."...)
	if e.DCERPC == nil {
		return append(b, "unknown.unknown"...)
	}
	b = appendLower(b, e.DCERPC.Interface.Name, "unknown")
	b = append(b, '.')
	if e.DCERPC.Operation != "" {
		return appendLower(b, e.DCERPC.Operation, "")
	}
	return strconv.AppendUint(append(b, "opnum"...), uint64(e.DCERPC.Opnum), 10)
}

// appendLower appends s (or, when s is empty, def) lower-cased as
// strings.ToLower does, in place: subjects are built once per record.
func appendLower(b []byte, s, def string) []byte {
	if s == "" {
		s = def
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(b, strings.ToLower(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// rfc3339 formats t in UTC with nanoseconds, as
// t.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") does; it runs two
// or three times per record, so years 0 to 9999 are written digit by digit.
func rfc3339(t time.Time) string {
	var b [30]byte
	return string(appendRFC3339(b[:0], t))
}

func appendRFC3339(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = appendDigits(append(b, '-'), int(month), 2)
	b = appendDigits(append(b, '-'), day, 2)
	b = appendDigits(append(b, 'T'), hour, 2)
	b = appendDigits(append(b, ':'), minute, 2)
	b = appendDigits(append(b, ':'), sec, 2)
	b = appendDigits(append(b, '.'), t.Nanosecond(), 9)
	return append(b, 'Z')
}

// appendDigits writes v (not negative) in exactly n decimal digits.
func appendDigits(b []byte, v, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, 0)
	}
	for i := len(b) - 1; i >= len(b)-n; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// RecordKey is what identifies a record on the wire, before the
// disambiguator: see CallKey and FileKey.
type RecordKey [16]byte

// appendKeyContent appends the identifying content shared by calls and
// file operations, the input of their key's hash: the kind, capture time,
// connection (5-tuple and VLAN), SMB session and file id. Built in one
// buffer and hashed with sha256.Sum256, so keys cost no allocation.
func appendKeyContent(b []byte, kind string, t time.Time, ep Endpoints, smb *SMBContext) []byte {
	field := func(b []byte, s string) []byte {
		return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
	}
	b = field(b, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
	c, s := ep.Client.As16(), ep.Server.As16()
	b = append(b, c[:]...)
	b = append(b, s[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(ep.ClientPort)<<32|uint64(ep.ServerPort)<<16|uint64(ep.VLAN))
	b = append(b, 6) // TCP: the fifth element of the tuple
	if smb != nil {
		b = binary.BigEndian.AppendUint64(b, smb.SessionID)
		return field(b, smb.FileID)
	}
	b = binary.BigEndian.AppendUint64(b, 0)
	return field(b, "")
}

// CallKey identifies a call by its own content: capture time of the
// request, connection, SMB session and file, call id and opnum. Nothing
// else a run saw (other files, other connections, the number of workers)
// enters it, so the same call has the same key in every replay and live.
func CallKey(c *Call) RecordKey {
	var buf [160]byte
	b := appendKeyContent(buf[:0], "call", c.Time, c.Endpoints, c.SMB)
	b = binary.BigEndian.AppendUint64(b, uint64(c.CallID)<<16|uint64(c.Opnum))
	sum := sha256.Sum256(b)
	return RecordKey(sum[:16])
}

// FileKey identifies a file operation: capture time, connection, SMB
// session and file id, operation and path.
func FileKey(f *FileOp) RecordKey {
	var buf [256]byte
	b := appendKeyContent(buf[:0], "file:"+f.Op, f.Time, f.Endpoints, &f.SMB)
	b = append(b, f.Path...)
	sum := sha256.Sum256(b)
	return RecordKey(sum[:16])
}

// eventID derives a record's event.id from its key, the disambiguator
// among equal keys of one connection, and what is made of it: "call", or
// "alert:<rule id>". JetStream de-duplicates on it.
func eventID(kind string, k RecordKey, dup uint32) string {
	var buf [96]byte
	b := append(append(buf[:0], kind...), 0)
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint32(b, dup)
	sum := sha256.Sum256(b)
	var id [32]byte
	hex.Encode(id[:], sum[:16])
	return string(id[:])
}

func endpoints(ep Endpoints) (*Endpoint, *Endpoint, *Network) {
	src := &Endpoint{IP: ep.Client.String(), Port: ep.ClientPort, Domain: ep.ClientName}
	dst := &Endpoint{IP: ep.Server.String(), Port: ep.ServerPort, Domain: ep.ServerName}
	n := &Network{Transport: "tcp"}
	if ep.VLAN != 0 {
		n.VLAN = &VLAN{ID: ep.VLAN}
	}
	return src, dst, n
}

func userFields(id *Identity) *User {
	if id == nil {
		return nil
	}
	u := &User{Name: id.User, Domain: id.Domain, Authenticator: id.Mechanism, Source: id.From, Realm: id.Realm, SPN: id.SPN}
	if id.Mechanism == "Kerberos" && id.User == "" {
		u.Note = "Kerberos: the client principal is encrypted in the ticket and not visible"
	}
	return u
}

func smbFields(s *SMBContext) *SMBFields {
	if s == nil {
		return nil
	}
	f := &SMBFields{Version: s.Version, Dialect: s.Dialect, Tree: s.Tree, Pipe: s.Pipe, FileID: s.FileID, Signed: s.Signed}
	if s.SessionID != 0 {
		var b [18]byte
		f.SessionID = string(appendHex16(b[:0], s.SessionID))
	}
	return f
}

// appendHex16 writes v as fmt's "0x%016x".
func appendHex16(b []byte, v uint64) []byte {
	b = append(b, '0', 'x')
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[v>>uint(shift)&0xf])
	}
	return b
}

// callEventParts are the objects every call's event has, allocated
// together: one allocation per event instead of one per object. The
// optional ones (user, SMB, auth, VLAN) are allocated when present, so
// that the block stays small for the calls without them.
type callEventParts struct {
	ev       Event
	src, dst Endpoint
	nw       Network
	d        DCERPCFields
	pcap     Pcap
	category [1]string
	typ      [1]string
}

// CallEvent renders a call as an event.
func CallEvent(c *Call, observer string) *Event { return callEvent(c, observer, nil) }

// addrStrings remembers the text of the last client and server addresses:
// the calls of one connection, and of a flood, repeat them.
type addrStrings struct {
	addr [2]netip.Addr
	text [2]string
}

func (a *addrStrings) of(i int, x netip.Addr) string {
	if a == nil {
		return x.String()
	}
	if a.text[i] == "" || a.addr[i] != x {
		a.addr[i], a.text[i] = x, x.String()
	}
	return a.text[i]
}

func callEvent(c *Call, observer string, addrs *addrStrings) *Event {
	p := &callEventParts{}
	ep := c.Endpoints
	p.src = Endpoint{IP: addrs.of(0, ep.Client), Port: ep.ClientPort, Domain: ep.ClientName}
	p.dst = Endpoint{IP: addrs.of(1, ep.Server), Port: ep.ServerPort, Domain: ep.ServerName}
	p.nw = Network{Transport: "tcp", Protocol: "dce_rpc"}
	if ep.VLAN != 0 {
		p.nw.VLAN = &VLAN{ID: ep.VLAN}
	}
	src := &p.src
	op := dissect.OpName(c.Iface, c.Opnum)
	start := rfc3339(c.Time)
	p.category[0], p.typ[0] = "network", "protocol"
	ev := &p.ev
	*ev = Event{
		Timestamp: start,
		Event: EventMeta{
			Kind:     "event",
			ID:       eventID("call", c.recordKey(), c.Dup),
			Category: p.category[:],
			Type:     p.typ[:],
			Action:   op,
			Dataset:  "tschsensor.call",
			Start:    start,
		},
		Observer:    Observer{Name: observer, Type: "sensor", Product: "tschsensor"},
		Source:      src,
		Destination: &p.dst,
		Network:     &p.nw,
	}
	ev.User = userFields(c.User)
	ev.SMB = smbFields(c.SMB)
	// Without a NetBIOS session request, the client's name is the
	// workstation it gave in NTLMSSP AUTHENTICATE.
	if src.Domain == "" && c.User != nil {
		src.Domain = c.User.Workstation
	}
	if c.Responded {
		ev.Event.End = rfc3339(c.ResponseTime)
	} else if c.Flood != nil {
		ev.Event.End = rfc3339(c.Flood.Last)
	}
	d := &p.d
	*d = DCERPCFields{
		Interface:      DCERPCInterface{Name: c.Iface.String(), UUID: c.IfaceUUID, Version: c.IfaceVersion},
		Operation:      op,
		Opnum:          c.Opnum,
		CallID:         c.CallID,
		ContextID:      c.ContextID,
		Transport:      c.Transport,
		TransferSyntax: c.Syntax.String(),
		Encrypted:      c.Encrypted,
		Decrypted:      c.Decrypted,
		DecryptError:   c.DecryptError,
		Fragments:      Pair{c.RequestFragments, c.ResponseFragments},
		StubLength:     Pair{c.RequestStubLen, c.ResponseStubLen},
		Truncated:      c.Truncated,
		Responded:      c.Responded,
		DecodeError:    c.DecodeError,
	}
	if d.Interface.Name == "" {
		d.Interface.Name = "unknown"
	}
	if f := c.Flood; f != nil {
		d.Flood = &DCERPCFlood{Calls: f.Calls, LastCallID: f.LastCallID, Opnums: f.Opnums}
	}
	if c.HasAuth {
		d.Auth = &DCERPCAuth{Type: dissect.AuthTypeName(c.AuthType), TypeID: c.AuthType, Level: dissect.AuthLevelName(c.AuthLevel), LevelID: c.AuthLevel}
	}
	ev.DCERPC = d
	switch {
	case c.Fault != nil:
		d.FaultCode = c.Fault
		d.Fault = FaultName(*c.Fault)
		ev.Event.Outcome = "failure"
	case !c.Responded:
		ev.Event.Outcome = "unknown"
	case c.Tsch != nil && c.Tsch.Outcome() != "":
		ev.Event.Outcome = c.Tsch.Outcome()
	default:
		ev.Event.Outcome = "unknown"
	}
	if c.Tsch != nil {
		ev.Tsch = c.Tsch
	}
	if c.PcapFile != "" {
		p.pcap = Pcap{File: c.PcapFile, Frames: c.Frames}
		ev.Pcap = &p.pcap
	}
	return ev
}

// FaultName names the common DCE-RPC fault statuses.
func FaultName(s uint32) string {
	switch s {
	case 0x00000005:
		return "access_denied"
	case 0x1c010002:
		return "nca_s_op_rng_error"
	case 0x1c010003:
		return "nca_s_unknown_if"
	case 0x1c00001a:
		return "nca_s_proto_error"
	case 0x000006f7:
		return "rpc_x_bad_stub_data"
	case 0x1c000021:
		return "nca_s_fault_context_mismatch"
	case 0x000006d8:
		return "rpc_s_fault_ndr"
	case 0x00000721:
		return "rpc_s_sec_pkg_error"
	}
	return fmt.Sprintf("0x%08x", s)
}
