package dissect

// The registry of RPC interfaces the sensor decodes. Each interface lives in
// its own file (iface_atsvc.go, iface_sasec.go, iface_tsch.go, iface_epm.go):
// its UUID and version, and a table of operations indexed by opnum, each with
// its name and the decoders of its request and response stubs. Other
// interfaces seen on the same pipes and ports are only named, for the bind
// statistics (iface_known.go).
//
// To add an operation: one row in its interface's table, an Op constant, and
// its decoders next to the table; tsch_test.go's round-trip table then asks
// for a case. To add an interface: an Iface constant, a file with its table,
// and its entry in registry below.

import (
	"strings"

	"github.com/oiweiwei/go-msrpc/ndr"
)

// Iface identifies the RPC interfaces the sensor decodes.
type Iface uint8

// The decoded interfaces; IfaceUnknown is any other.
const (
	IfaceUnknown Iface = iota
	IfaceATSVC
	IfaceSASec
	IfaceITaskSchedulerService
	IfaceEPM
)

// Interface describes one decoded RPC interface.
type Interface struct {
	Iface        Iface
	Name         string
	UUID         string // canonical lower-case text
	Major, Minor uint16
	// Ops is indexed by opnum.
	Ops []Operation
	// prepare runs before any request decoder, also for an opnum the table
	// lacks, so that every request of the interface carries its object
	// ("job", "account") in the event.
	prepare func(out *TschInfo)
}

// Op names one operation of one interface. The constants below are what
// rules compare against: a misspelt name does not compile.
type Op uint32

// OpOf returns the operation opnum of interface i.
func OpOf(i Iface, opnum uint16) Op { return Op(i)<<16 | Op(opnum) }

// Iface returns the operation's interface.
func (o Op) Iface() Iface { return Iface(o >> 16) }

// Num returns the operation's opnum.
func (o Op) Num() uint16 { return uint16(o) }

// String returns the specification's name of the operation, "" when unknown.
func (o Op) String() string { return OpName(o.Iface(), o.Num()) }

// stubDecoder decodes one operation's request or response stub into out.
type stubDecoder func(d ndrDec, o TschOptions, out *TschInfo) error

// decodeAs makes the stubDecoder that unmarshals the stub into go-msrpc's
// message type T, then lets fill copy what it needs into out. Generic rather
// than reflective: one closure per table row, built once at initialisation.
func decodeAs[T any, P interface {
	*T
	ndr.Unmarshaler
}](fill func(m P, o TschOptions, out *TschInfo)) stubDecoder {
	return func(d ndrDec, o TschOptions, out *TschInfo) error {
		var m T
		if err := d.unmarshal(P(&m)); err != nil {
			return err
		}
		fill(&m, o, out)
		return nil
	}
}

// Operation is one row of an interface's table.
type Operation struct {
	Op   Op
	Name string
	// Request and response decoders; nil where the sensor decodes the
	// stub elsewhere (EPM, epm.go) or not at all.
	request, response stubDecoder
}

// registry is read-only after package initialisation.
var registry = [...]*Interface{
	IfaceATSVC:                 &atsvcInterface,
	IfaceSASec:                 &sasecInterface,
	IfaceITaskSchedulerService: &itssInterface,
	IfaceEPM:                   &epmInterface,
}

// Interfaces lists the decoded interfaces in Iface order.
func Interfaces() []*Interface {
	out := make([]*Interface, 0, len(registry))
	for _, in := range registry {
		if in != nil {
			out = append(out, in)
		}
	}
	return out
}

// Lookup returns the description of i, nil for IfaceUnknown.
func (i Iface) Lookup() *Interface {
	if int(i) < len(registry) {
		return registry[i]
	}
	return nil
}

// Decoded reports whether calls on the interface are decoded and reported
// (the others are only counted).
func (i Iface) Decoded() bool { return i.Lookup() != nil }

// IfaceByUUID names the interface a bind's abstract syntax selects. The UUID
// is the canonical text form, compared case-insensitively; the major version
// must match too (a different major is a different interface).
func IfaceByUUID(uuid string, major uint16) Iface {
	for _, in := range registry {
		if in != nil && strings.EqualFold(uuid, in.UUID) {
			if major != in.Major {
				return IfaceUnknown
			}
			return in.Iface
		}
	}
	return IfaceUnknown
}

func (i Iface) String() string {
	if in := i.Lookup(); in != nil {
		return in.Name
	}
	return ""
}

// UUID returns the interface UUID in canonical lower-case text.
func (i Iface) UUID() string {
	if in := i.Lookup(); in != nil {
		return in.UUID
	}
	return ""
}

func (i Iface) major() uint16 {
	if in := i.Lookup(); in != nil {
		return in.Major
	}
	return 0
}

// operation returns the table row of opnum, nil when there is none.
func (i Iface) operation(opnum uint16) *Operation {
	in := i.Lookup()
	if in == nil || int(opnum) >= len(in.Ops) {
		return nil
	}
	return &in.Ops[opnum]
}

// ChangesNothing says whether a call of the operation leaves the server as
// it was: it only reads (the task list, a task's definition, state,
// security descriptor or run times, an AT job, a task's account name), or
// its interface has no such opnum and the server rejects it (MS-RPCE:
// nca_s_op_rng_error). An operation of an interface that is not decoded
// is not known to change nothing.
func (o Op) ChangesNothing() bool {
	switch o {
	case OpSchRpcHighestVersion, OpSchRpcRetrieveTask, OpSchRpcGetSecurity, OpSchRpcEnumFolders,
		OpSchRpcEnumTasks, OpSchRpcEnumInstances, OpSchRpcGetInstanceInfo, OpSchRpcScheduledRuntimes,
		OpSchRpcGetLastRunInfo, OpSchRpcGetTaskInfo, OpSchRpcGetNumberOfMissedRuns,
		OpNetrJobEnum, OpNetrJobGetInfo,
		OpSAGetNSAccountInformation, OpSAGetAccountInformation:
		return true
	}
	return o.Iface().Decoded() && o.Iface() != IfaceEPM && o.Iface().operation(o.Num()) == nil
}

// OpName returns the specification's name of an operation, "" when the
// interface has no such opnum.
func OpName(i Iface, opnum uint16) string {
	if op := i.operation(opnum); op != nil {
		return op.Name
	}
	return ""
}

// InterfaceName names an interface by UUID for statistics: a decoded one by
// its registry name, another well-known one by its usual name, else "".
func InterfaceName(uuid string) string {
	for _, in := range registry {
		if in != nil && in.UUID == uuid {
			return in.Name
		}
	}
	return knownInterfaces[uuid]
}
