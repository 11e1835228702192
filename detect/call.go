// Package detect turns dissected MS-TSCH calls and SMB file operations into
// events and alerts: naming, MITRE mapping, rules and the AtExec correlation.
// It reads only finished records and uses capture time, never the wall clock,
// so the same capture always gives the same output.
package detect

import (
	"net/netip"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// Transports of an RPC call (MS-RPCE protocol sequences).
const (
	TransportNamedPipe = "ncacn_np"
	TransportTCP       = "ncacn_ip_tcp"
)

// Endpoints names the RPC client and server of a connection.
type Endpoints struct {
	Client, Server         netip.Addr
	ClientPort, ServerPort uint16
	VLAN                   uint16
	// ClientName and ServerName are NetBIOS names from an NBSS session
	// request (port 139), when seen.
	ClientName, ServerName string
}

// Identity is who authenticated, as far as the wire shows.
type Identity struct {
	User, Domain, Workstation string
	// Mechanism is "NTLMSSP", "NTLM" (raw, SMB1), "Kerberos" or "anonymous".
	Mechanism string
	// From is where it was seen: "smb_session" or "rpc_bind".
	From   string
	Realm  string
	SPN    string
	NTLMv2 *bool
}

// SMBContext is where in SMB a named-pipe call travelled.
type SMBContext struct {
	Version   int // 1 or 2 (SMB2 and SMB3)
	Dialect   string
	SessionID uint64
	Tree      string
	Pipe      string
	FileID    string
	Signed    bool
}

// Call is one DCE-RPC call on a MS-TSCH (or unknown, on the atsvc pipe)
// interface: the request joined with its response.
type Call struct {
	Time, ResponseTime time.Time
	Endpoints
	Transport string
	SMB       *SMBContext
	User      *Identity

	Iface        dissect.Iface
	IfaceUUID    string
	IfaceVersion string
	Opnum        uint16
	CallID       uint32
	ContextID    uint16
	Syntax       dissect.Syntax
	AuthType     uint8
	AuthLevel    uint8
	HasAuth      bool
	Encrypted    bool
	Decrypted    bool
	// DecryptError says why sealed stubs could not be opened with the
	// supplied credentials.
	DecryptError string

	RequestFragments, ResponseFragments int
	RequestStubLen, ResponseStubLen     int
	Truncated                           bool

	Responded bool
	// Fault is the status of a fault PDU answering the call.
	Fault *uint32

	Tsch        *dissect.TschInfo
	DecodeError string

	// Unresolved marks a call on a TCP channel whose bind was not captured
	// and whose port the endpoint mapper had not (yet) named; Stubs then
	// keeps what is needed to decode it once named.
	Unresolved bool
	Stubs      *RawStubs

	// Flood is set on a record that stands for several calls that a
	// flooded channel ended unanswered (see FloodSummary); the record's
	// other fields are its first call's, but for the fragment and stub
	// byte totals and the frames.
	Flood *FloodSummary

	PcapFile string
	Frames   []uint64
	// Seq orders the records of one worker (creation order); it is no part
	// of the event id, which must not depend on what else a run saw.
	Seq uint64
	// Dup tells apart records of one connection whose identifying content
	// (CallKey) is equal; 0 for the first, and in practice always.
	Dup uint32
	// Key is CallKey(c) when the worker already computed it for Dup (the
	// call complete); zero, the detector computes it.
	Key RecordKey
}

// recordKey is c.Key, or CallKey(c) when it was not set.
func (c *Call) recordKey() RecordKey {
	if c.Key != (RecordKey{}) {
		return c.Key
	}
	return CallKey(c)
}

// FloodSummary counts the calls that a channel holding the most calls it
// may keep awaiting a response (--max-calls) ended unanswered within one
// window of capture time, of operations that change nothing on the server
// (dissect.Op.ChangesNothing).
type FloodSummary struct {
	Calls int // the first call included
	// Last and LastCallID are the last call's request time and call id.
	Last       time.Time
	LastCallID uint32
	// Opnums are the calls' distinct opnums in the order they came, at
	// most MaxFloodOpnums.
	Opnums []uint16
}

// MaxFloodOpnums bounds FloodSummary.Opnums: an attacker cycling through
// all 65,536 opnums costs a summary no more.
const MaxFloodOpnums = 32

// AddOpnum notes opnum among the summary's.
func (f *FloodSummary) AddOpnum(opnum uint16) {
	if len(f.Opnums) >= MaxFloodOpnums {
		return
	}
	for _, o := range f.Opnums {
		if o == opnum {
			return
		}
	}
	f.Opnums = append(f.Opnums, opnum)
}

// RawStubs are a call's reassembled stubs, kept until its interface is known.
type RawStubs struct {
	Request, Response []byte
	DRep              [4]byte
}

// FileOpLogoff is the Op of the record that ends an SMB session (LOGOFF):
// no file of it, only the session (SMB.SessionID) on its connection. It goes
// to the AtExec correlation alone, neither to file rules nor to custom rules.
const FileOpLogoff = "logoff"

// FileOp is an SMB operation on a file of a disk share (not a pipe), the
// part of SMB that the AtExec output retrieval and task-file rules read.
type FileOp struct {
	Time time.Time
	Endpoints
	SMB  SMBContext
	Op   string // "open", "read", "write", "delete", "close", or FileOpLogoff
	Path string // share-relative, as sent ("Temp\\x.tmp")
	// Share is the share name without the server ("ADMIN$").
	Share  string
	Bytes  uint64
	Status uint32
	User   *Identity
	// Data is the first bytes written to a legacy .job file (bounded), so
	// that rules can read the task it defines; nil otherwise.
	Data []byte

	PcapFile string
	Frames   []uint64
	// Seq and Dup as in Call.
	Seq uint64
	Dup uint32
}
