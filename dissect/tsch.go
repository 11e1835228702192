package dissect

// MS-TSCH stub decoding. go-msrpc's generated types do the NDR work; this
// file picks the stub type by (interface, opnum), guards go-msrpc against
// hostile sizes and panics, and turns the decoded call into TschInfo, the
// "tsch" object of an event.
//
// The operations and their decoders are in the interface registry
// (iface.go, one iface_*.go file per interface); adding one is described
// there.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/oiweiwei/go-msrpc/msrpc/dtyp"
	"github.com/oiweiwei/go-msrpc/ndr"
)

// Bounds of stub decoding. Lists are cut (with a *_truncated flag), never
// refused, so the count the peer sent is still reported.
const (
	DefaultTschListLimit = 256 // names, jobs, runtimes, arguments, instances kept per call
	maxTschCredentials   = 16  // credential user names kept from SchRpcRegisterTask
	// maxNDRCount caps an NDR size label (conformance, variance) that is
	// larger than the bytes left in the stub: go-msrpc allocates a string's
	// buffer from the label before reading it, so an unchecked 0xffffffff
	// would ask for 8 GiB.
	maxNDRCount = 1 << 16
)

// TschOptions tunes stub decoding; the zero value means the defaults.
type TschOptions struct {
	XMLLimit  int // bytes of task XML kept and parsed (DefaultTaskXMLLimit)
	ListLimit int // entries kept per list (DefaultTschListLimit)
}

func (o TschOptions) xmlLimit() int {
	if o.XMLLimit <= 0 {
		return DefaultTaskXMLLimit
	}
	return o.XMLLimit
}

func (o TschOptions) listLimit() int {
	if o.ListLimit <= 0 {
		return DefaultTschListLimit
	}
	return o.ListLimit
}

// TschInfo is everything decoded from one MS-TSCH call's request and response
// stubs. It is marshalled as the "tsch" object of an event. Strings are
// copies: a TschInfo may outlive the stub.
type TschInfo struct {
	Operation   string        `json:"operation,omitempty"`
	Task        *TaskInfo     `json:"task,omitempty"`
	Register    *RegisterInfo `json:"register,omitempty"`
	Job         *JobInfo      `json:"job,omitempty"`
	Account     *AccountInfo  `json:"account,omitempty"`
	Run         *RunInfo      `json:"run,omitempty"`
	Security    *SecurityInfo `json:"security,omitempty"`
	Enum        *EnumInfo     `json:"enum,omitempty"`
	Instance    *InstanceInfo `json:"instance,omitempty"`
	LastRun     *LastRunInfo  `json:"last_run,omitempty"`
	Runtimes    *RuntimesInfo `json:"runtimes,omitempty"`
	Flags       *uint32       `json:"flags,omitempty"`       // Stop, Delete, Rename, RetrieveTask, GetTaskInfo
	Version     string        `json:"version,omitempty"`     // SchRpcHighestVersion: "1.6"
	MissedRuns  *uint32       `json:"missed_runs,omitempty"` // SchRpcGetNumberOfMissedRuns
	ReturnCode  *uint32       `json:"return_code,omitempty"`
	ReturnName  string        `json:"return_name,omitempty"`
	DecodeError string        `json:"decode_error,omitempty"`

	win32 bool // ReturnCode is a Win32 error (NET_API_STATUS), not an HRESULT
}

// TaskInfo describes the task a call names or defines; the XML-derived
// fields come from ParseTaskXML. For ITaskSchedulerService calls on folders
// (CreateFolder, EnumTasks...) Path is the folder.
type TaskInfo struct {
	Path              string        `json:"path,omitempty"`
	NewPath           string        `json:"new_path,omitempty"`
	Command           string        `json:"command,omitempty"`
	Arguments         string        `json:"arguments,omitempty"`
	WorkingDirectory  string        `json:"working_directory,omitempty"`
	RunAs             string        `json:"run_as,omitempty"`
	Hidden            *bool         `json:"hidden,omitempty"`
	Enabled           *bool         `json:"enabled,omitempty"`
	State             string        `json:"state,omitempty"` // TASK_STATE_* from GetTaskInfo
	LogonType         string        `json:"logon_type,omitempty"`
	RunLevel          string        `json:"run_level,omitempty"`
	Actions           []TaskAction  `json:"actions,omitempty"`
	ActionsTruncated  bool          `json:"actions_truncated,omitempty"`
	Triggers          []TaskTrigger `json:"triggers,omitempty"`
	TriggersTruncated bool          `json:"triggers_truncated,omitempty"`
	Author            string        `json:"author,omitempty"`
	Description       string        `json:"description,omitempty"`
	URI               string        `json:"uri,omitempty"`
	Date              string        `json:"date,omitempty"`
	XML               string        `json:"xml,omitempty"`
	XMLTruncated      bool          `json:"xml_truncated,omitempty"`
	XMLOversized      bool          `json:"xml_oversized,omitempty"` // longer than the XML limit: set by the sensor
	XMLSHA256         string        `json:"xml_sha256,omitempty"`
	XMLParseError     string        `json:"xml_parse_error,omitempty"`
	// XMLMalformed: the XML needed repairs a strict parser would refuse
	// (see ParseTaskXMLBytes); the fields above were read all the same.
	XMLMalformed bool `json:"xml_malformed,omitempty"`
}

// RegisterInfo is SchRpcRegisterTask's non-XML arguments and results.
type RegisterInfo struct {
	Flags            uint32        `json:"flags"`
	FlagsNames       []string      `json:"flags_names,omitempty"`
	SDDL             string        `json:"sddl,omitempty"`
	LogonType        string        `json:"logon_type,omitempty"`
	CredentialsCount uint32        `json:"credentials_count,omitempty"`
	CredentialUsers  []string      `json:"credential_users,omitempty"` // never a password
	ActualPath       string        `json:"actual_path,omitempty"`
	ErrorInfo        *XMLErrorInfo `json:"error_info,omitempty"`
}

// XMLErrorInfo is TASK_XML_ERROR_INFO: where the server found the XML wrong.
type XMLErrorInfo struct {
	Line   uint32 `json:"line"`
	Column uint32 `json:"column"`
	Node   string `json:"node,omitempty"`
	Value  string `json:"value,omitempty"`
}

// JobSchedule is an AT job's schedule (AT_INFO / AT_ENUM).
type JobSchedule struct {
	JobTime     string   `json:"job_time,omitempty"` // "HH:MM" local time of the server
	JobTimeMS   *uint64  `json:"job_time_ms,omitempty"`
	DaysOfMonth []int    `json:"days_of_month,omitempty"`
	DaysOfWeek  []string `json:"days_of_week,omitempty"`
	Flags       uint8    `json:"flags,omitempty"`
	FlagsNames  []string `json:"flags_names,omitempty"`
}

// JobInfo is an ATSVC call.
type JobInfo struct {
	ServerName string `json:"server_name,omitempty"`
	JobSchedule
	JobID                  *uint32    `json:"job_id,omitempty"`
	MinJobID               *uint32    `json:"min_job_id,omitempty"`
	MaxJobID               *uint32    `json:"max_job_id,omitempty"`
	PreferredMaximumLength uint32     `json:"preferred_maximum_length,omitempty"`
	ResumeHandle           *uint32    `json:"resume_handle,omitempty"`
	EntriesRead            *uint32    `json:"entries_read,omitempty"`
	TotalEntries           *uint32    `json:"total_entries,omitempty"`
	Jobs                   []JobEntry `json:"jobs,omitempty"`
	JobsTruncated          bool       `json:"jobs_truncated,omitempty"`
}

// JobEntry is one job NetrJobEnum returned.
type JobEntry struct {
	JobID uint32 `json:"job_id"`
	JobSchedule
	Command string `json:"command,omitempty"`
}

// AccountInfo is a SASec call; the password is never kept.
type AccountInfo struct {
	ServerName  string   `json:"server_name,omitempty"`
	JobName     string   `json:"job_name,omitempty"`
	AccountName string   `json:"account_name,omitempty"`
	Flags       uint32   `json:"flags,omitempty"`
	FlagsNames  []string `json:"flags_names,omitempty"`
}

// RunInfo is SchRpcRun.
type RunInfo struct {
	ArgumentsCount     uint32   `json:"arguments_count,omitempty"`
	Arguments          []string `json:"arguments,omitempty"`
	ArgumentsTruncated bool     `json:"arguments_truncated,omitempty"`
	Flags              uint32   `json:"flags,omitempty"`
	FlagsNames         []string `json:"flags_names,omitempty"`
	SessionID          uint32   `json:"session_id,omitempty"`
	User               string   `json:"user,omitempty"`
	InstanceGUID       string   `json:"instance_guid,omitempty"`
}

// SecurityInfo is SchRpcCreateFolder, SetSecurity and GetSecurity.
type SecurityInfo struct {
	SDDL                string `json:"sddl,omitempty"`
	Flags               uint32 `json:"flags,omitempty"`
	SecurityInformation uint32 `json:"security_information,omitempty"`
}

// EnumInfo is SchRpcEnumFolders, EnumTasks and EnumInstances.
type EnumInfo struct {
	Flags          uint32   `json:"flags,omitempty"`
	FlagsNames     []string `json:"flags_names,omitempty"`
	StartIndex     *uint32  `json:"start_index,omitempty"`
	RequestedCount uint32   `json:"requested_count,omitempty"`
	Count          *uint32  `json:"count,omitempty"`
	Names          []string `json:"names,omitempty"`     // folder or task names
	Instances      []string `json:"instances,omitempty"` // EnumInstances: instance GUIDs
	Truncated      bool     `json:"truncated,omitempty"`
}

// InstanceInfo is SchRpcGetInstanceInfo and StopInstance.
type InstanceInfo struct {
	GUID           string   `json:"guid,omitempty"`
	Flags          uint32   `json:"flags,omitempty"`
	Path           string   `json:"path,omitempty"`
	State          string   `json:"state,omitempty"`
	CurrentAction  string   `json:"current_action,omitempty"`
	Info           string   `json:"info,omitempty"`
	GroupInstances []string `json:"group_instances,omitempty"`
	EnginePID      uint32   `json:"engine_pid,omitempty"`
}

// LastRunInfo is SchRpcGetLastRunInfo's answer.
type LastRunInfo struct {
	Time           string `json:"time,omitempty"` // ISO 8601 UTC from SYSTEMTIME
	ReturnCode     uint32 `json:"return_code"`
	ReturnCodeName string `json:"return_code_name,omitempty"`
}

// RuntimesInfo is SchRpcScheduledRuntimes.
type RuntimesInfo struct {
	Start          string   `json:"start,omitempty"`
	End            string   `json:"end,omitempty"`
	Flags          uint32   `json:"flags,omitempty"`
	RequestedCount uint32   `json:"requested_count,omitempty"`
	Count          *uint32  `json:"count,omitempty"`
	Runtimes       []string `json:"runtimes,omitempty"`
	Truncated      bool     `json:"truncated,omitempty"`
}

// Outcome says how the server answered: "success" or "failure" from the
// response's return value (HRESULT severity bit; for ATSVC the Win32
// NET_API_STATUS, success only when 0), "" if no response was decoded.
func (t *TschInfo) Outcome() string {
	if t == nil || t.ReturnCode == nil {
		return ""
	}
	c := *t.ReturnCode
	if t.win32 {
		if c == 0 {
			return "success"
		}
		return "failure"
	}
	if c&0x80000000 == 0 {
		return "success"
	}
	return "failure"
}

// DecodeRequest decodes a request stub into *out, which it resets first.
// syn selects NDR20 or NDR64 (SyntaxUnknown tries NDR20, then NDR64); drep
// is the PDU header's data representation, whose byte order go-msrpc
// honours (its character set does not matter: MS-TSCH strings are UTF-16).
// On error the error is an *Error and out holds only the operation name and
// DecodeError: go-msrpc hands over nothing from a stub it could not finish.
func DecodeRequest(i Iface, opnum uint16, stub []byte, syn Syntax, drep [4]byte, out *TschInfo) error {
	return TschOptions{}.DecodeRequest(i, opnum, stub, syn, drep, out)
}

// DecodeResponse decodes a response stub into *out, adding to the fields
// DecodeRequest set for the same call (out may also be zero when the request
// was not seen). On error the request's fields stay and DecodeError grows.
func DecodeResponse(i Iface, opnum uint16, stub []byte, syn Syntax, drep [4]byte, out *TschInfo) error {
	return TschOptions{}.DecodeResponse(i, opnum, stub, syn, drep, out)
}

// DecodeRequest is the package-level DecodeRequest with o's bounds.
func (o TschOptions) DecodeRequest(i Iface, opnum uint16, stub []byte, syn Syntax, drep [4]byte, out *TschInfo) error {
	*out = TschInfo{Operation: OpName(i, opnum)}
	err := decodeStub(o, i, opnum, ndrDec{layer: "tsch", stub: stub, syn: syn, drep: drep}, out, false)
	if err != nil {
		out.DecodeError = "request: " + err.Error()
	}
	return err
}

// DecodeResponse is the package-level DecodeResponse with o's bounds.
func (o TschOptions) DecodeResponse(i Iface, opnum uint16, stub []byte, syn Syntax, drep [4]byte, out *TschInfo) error {
	if out.Operation == "" {
		out.Operation = OpName(i, opnum)
	}
	err := decodeStub(o, i, opnum, ndrDec{layer: "tsch", stub: stub, syn: syn, drep: drep}, out, true)
	if err != nil {
		msg := "response: " + err.Error()
		if out.DecodeError != "" {
			msg = out.DecodeError + "; " + msg
		}
		out.DecodeError = msg
	}
	return err
}

// ndrDec is one stub to unmarshal with go-msrpc.
type ndrDec struct {
	layer string
	stub  []byte
	syn   Syntax
	drep  [4]byte
}

// unmarshal decodes the stub into m, a go-msrpc request or response type,
// through a guarded reader. SyntaxUnknown tries NDR20, then NDR64; go-msrpc
// copies into m only once a whole stub decoded, so a failed try leaves m
// untouched. go-msrpc is third-party code fed hostile bytes: a panic inside
// it (a bad type assertion on an aliased pointer, an index out of range) is
// turned into ErrMalformed here, the package's one recover, which covers
// go-msrpc alone so that our own bugs still crash the fuzzers.
func (d ndrDec) unmarshal(m ndr.Unmarshaler) error {
	if d.syn == SyntaxUnknown {
		d.syn = SyntaxNDR
		if err := d.once(m); err == nil {
			return nil
		}
		d.syn = SyntaxNDR64
	}
	return d.once(m)
}

func (d ndrDec) once(m ndr.Unmarshaler) (err error) {
	// go-msrpc's DataRepresentation keeps the wire bytes in wire order:
	// integer/char nibbles in the low byte, floating point in the next.
	rep := ndr.DataRepresentation(binary.LittleEndian.Uint32(d.drep[:]))
	var inner ndr.Reader
	if d.syn == SyntaxNDR64 {
		inner = ndr.NDR64(d.stub, rep)
	} else {
		inner = ndr.NDR20(d.stub, rep)
	}
	defer func() {
		if p := recover(); p != nil {
			err = errAt(d.layer, inner.Offset(), ErrMalformed, "go-msrpc panic: %v", p)
		}
	}()
	if uerr := m.UnmarshalNDR(context.Background(), &ndrGuard{Reader: inner}); uerr != nil {
		return ndrError(d.layer, inner, uerr)
	}
	return nil
}

var errNDRCount = fmt.Errorf("%w: ndr size label above %d and beyond the stub", ErrLimit, maxNDRCount)

func ndrError(layer string, r ndr.Reader, err error) error {
	var de *Error
	if errors.As(err, &de) {
		return err
	}
	switch {
	case errors.Is(err, ErrLimit):
		return errAt(layer, r.Offset(), err, "")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errAt(layer, r.Offset(), ErrTruncated, "%v", err)
	}
	return errAt(layer, r.Offset(), ErrMalformed, "%v", err)
}

// ndrGuard wraps go-msrpc's reader to refuse absurd size labels before
// go-msrpc allocates from them. Pointer referents are decoded later through
// the inner reader, so each deferred unmarshaler is wrapped to be handed
// the guard again.
type ndrGuard struct {
	ndr.Reader
}

func (g *ndrGuard) ReadSize(sz *uint64) error {
	if err := g.Reader.ReadSize(sz); err != nil {
		return err
	}
	if *sz > maxNDRCount && *sz > uint64(g.Reader.Len()) {
		return g.Reader.SetErr(errNDRCount)
	}
	return nil
}

func (g *ndrGuard) ReadPointer(p ndr.Pointer, set func(any), mrs ...ndr.Unmarshaler) error {
	wrapped := make([]ndr.Unmarshaler, len(mrs))
	for i, m := range mrs {
		wrapped[i] = guardedUnmarshaler{m: m, g: g}
	}
	return g.Reader.ReadPointer(p, set, wrapped...)
}

func (g *ndrGuard) Unmarshal(ctx context.Context, m ndr.Unmarshaler) error {
	return g.Reader.Unmarshal(ctx, guardedUnmarshaler{m: m, g: g})
}

type guardedUnmarshaler struct {
	m ndr.Unmarshaler
	g *ndrGuard
}

func (u guardedUnmarshaler) UnmarshalNDR(ctx context.Context, r ndr.Reader) error {
	if r == u.g.Reader {
		return u.m.UnmarshalNDR(ctx, u.g)
	}
	return u.m.UnmarshalNDR(ctx, &ndrGuard{Reader: r})
}

func errNoOp(i Iface, opnum uint16) error {
	return errAt("tsch", 0, ErrMalformed, "no %s operation %d", i, opnum)
}

// decodeStub runs the registry's decoder of the operation on the stub.
func decodeStub(o TschOptions, i Iface, opnum uint16, d ndrDec, out *TschInfo, response bool) error {
	if !response {
		if in := i.Lookup(); in != nil && in.prepare != nil {
			in.prepare(out)
		}
	}
	op := i.operation(opnum)
	dec := (stubDecoder)(nil)
	if op != nil {
		dec = op.request
		if response {
			dec = op.response
		}
	}
	if dec == nil {
		return errNoOp(i, opnum)
	}
	return dec(d, o, out)
}

func (t *TschInfo) task() *TaskInfo {
	if t.Task == nil {
		t.Task = &TaskInfo{}
	}
	return t.Task
}

// setPath records the task or folder a call names; a NULL path (allowed
// where the spec says "unique") adds no empty task object to the event.
func (t *TschInfo) setPath(p string) {
	if p != "" {
		t.task().Path = p
	}
}

func (t *TschInfo) job() *JobInfo {
	if t.Job == nil {
		t.Job = &JobInfo{}
	}
	return t.Job
}

func (t *TschInfo) account() *AccountInfo {
	if t.Account == nil {
		t.Account = &AccountInfo{}
	}
	return t.Account
}

func (t *TschInfo) setHRESULT(v int32) {
	c := uint32(v)
	t.ReturnCode, t.ReturnName, t.win32 = &c, HRESULTName(c), false
}

func (t *TschInfo) setWin32(c uint32) {
	t.ReturnCode, t.ReturnName, t.win32 = &c, Win32ErrorName(c), true
}

func ptr[T any](v T) *T { return &v }

// flagNames names the set bits of v, bit n by names[n]; other set bits are
// spelled in hex so nothing the peer sent is hidden.
func flagNames(v uint32, names []string) []string {
	var out []string
	for b := 0; b < 32; b++ {
		m := uint32(1) << b
		if v&m == 0 {
			continue
		}
		if b < len(names) && names[b] != "" {
			out = append(out, names[b])
		} else {
			out = append(out, fmt.Sprintf("0x%x", m))
		}
	}
	return out
}

func enumName(v uint32, names []string, typ string) string {
	if v < uint32(len(names)) {
		return names[v]
	}
	return typ + "(" + strconv.FormatUint(uint64(v), 10) + ")"
}

func boundStrings(in []string, limit int) ([]string, bool) {
	if len(in) > limit {
		return in[:limit:limit], true
	}
	return in, false
}

func boundGUIDs(in []*dtyp.GUID, limit int) ([]string, bool) {
	var out []string
	for _, g := range in {
		if len(out) == limit {
			return out, true
		}
		out = append(out, formatGUID(g))
	}
	return out, false
}

// formatGUID renders a GUID in canonical lower-case text, "" for none.
func formatGUID(g *dtyp.GUID) string {
	if g == nil {
		return ""
	}
	var d4 [8]byte
	copy(d4[:], g.Data4)
	return fmt.Sprintf("%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		g.Data1, g.Data2, g.Data3, d4[0], d4[1], d4[2], d4[3], d4[4], d4[5], d4[6], d4[7])
}

// formatSystemTime renders a SYSTEMTIME (UTC in MS-TSCH) as ISO 8601; a
// value no clock can show is rendered field by field so it is not lost.
func formatSystemTime(st *dtyp.SystemTime) string {
	if st == nil {
		return ""
	}
	if st.Month < 1 || st.Month > 12 || st.Day < 1 || st.Day > 31 || st.Hour > 23 ||
		st.Minute > 59 || st.Second > 60 || st.Milliseconds > 999 {
		return fmt.Sprintf("invalid(%d-%d-%d %d:%d:%d.%d)", st.Year, st.Month, st.Day,
			st.Hour, st.Minute, st.Second, st.Milliseconds)
	}
	return fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", st.Year, st.Month, st.Day,
		st.Hour, st.Minute, st.Second, st.Milliseconds)
}

// ---- return codes ----

// hresultNames holds the HRESULTs MS-TSCH servers answer with beyond
// HRESULT_FROM_WIN32 (which Win32ErrorName spells).
var hresultNames = map[uint32]string{
	0x00000000: "S_OK",
	0x00000001: "S_FALSE",
	0x80004001: "E_NOTIMPL",
	0x80004002: "E_NOINTERFACE",
	0x80004003: "E_POINTER",
	0x80004004: "E_ABORT",
	0x80004005: "E_FAIL",
	0x8000FFFF: "E_UNEXPECTED",
	0x80070005: "E_ACCESSDENIED",
	0x80070006: "E_HANDLE",
	0x8007000E: "E_OUTOFMEMORY",
	0x80070057: "E_INVALIDARG",
	0x80010105: "RPC_E_SERVERFAULT",
	0x00041300: "SCHED_S_TASK_READY",
	0x00041301: "SCHED_S_TASK_RUNNING",
	0x00041302: "SCHED_S_TASK_DISABLED",
	0x00041303: "SCHED_S_TASK_HAS_NOT_RUN",
	0x00041304: "SCHED_S_TASK_NO_MORE_RUNS",
	0x00041305: "SCHED_S_TASK_NOT_SCHEDULED",
	0x00041306: "SCHED_S_TASK_TERMINATED",
	0x00041307: "SCHED_S_TASK_NO_VALID_TRIGGERS",
	0x00041308: "SCHED_S_EVENT_TRIGGER",
	0x80041309: "SCHED_E_TRIGGER_NOT_FOUND",
	0x8004130A: "SCHED_E_TASK_NOT_READY",
	0x8004130B: "SCHED_E_TASK_NOT_RUNNING",
	0x8004130C: "SCHED_E_SERVICE_NOT_INSTALLED",
	0x8004130D: "SCHED_E_CANNOT_OPEN_TASK",
	0x8004130E: "SCHED_E_INVALID_TASK",
	0x8004130F: "SCHED_E_ACCOUNT_INFORMATION_NOT_SET",
	0x80041310: "SCHED_E_ACCOUNT_NAME_NOT_FOUND",
	0x80041311: "SCHED_E_ACCOUNT_DBASE_CORRUPT",
	0x80041312: "SCHED_E_NO_SECURITY_SERVICES",
	0x80041313: "SCHED_E_UNKNOWN_OBJECT_VERSION",
	0x80041314: "SCHED_E_UNSUPPORTED_ACCOUNT_OPTION",
	0x80041315: "SCHED_E_SERVICE_NOT_RUNNING",
	0x80041316: "SCHED_E_UNEXPECTEDNODE",
	0x80041317: "SCHED_E_NAMESPACE",
	0x80041318: "SCHED_E_INVALIDVALUE",
	0x80041319: "SCHED_E_MISSINGNODE",
	0x8004131A: "SCHED_E_MALFORMEDXML",
	0x0004131B: "SCHED_S_SOME_TRIGGERS_FAILED",
	0x0004131C: "SCHED_S_BATCH_LOGON_PROBLEM",
	0x8004131D: "SCHED_E_TOO_MANY_NODES",
	0x8004131E: "SCHED_E_PAST_END_BOUNDARY",
	0x8004131F: "SCHED_E_ALREADY_RUNNING",
	0x80041320: "SCHED_E_USER_NOT_LOGGED_ON",
	0x80041321: "SCHED_E_INVALID_TASK_HASH",
	0x80041322: "SCHED_E_SERVICE_NOT_AVAILABLE",
	0x80041323: "SCHED_E_SERVICE_TOO_BUSY",
	0x80041324: "SCHED_E_TASK_ATTEMPTED",
	0x00041325: "SCHED_S_TASK_QUEUED",
	0x80041326: "SCHED_E_TASK_DISABLED",
	0x80041327: "SCHED_E_TASK_NOT_V1_COMPAT",
	0x80041328: "SCHED_E_START_ON_DEMAND",
	0x80041329: "SCHED_E_TASK_NOT_UBPM_COMPAT",
	0x80041330: "SCHED_E_DEPRECATED_FEATURE_USED",
}

// win32Names holds the Win32 errors task scheduling calls commonly return.
var win32Names = map[uint32]string{
	0x00000000: "ERROR_SUCCESS",
	0x00000001: "ERROR_INVALID_FUNCTION",
	0x00000002: "ERROR_FILE_NOT_FOUND",
	0x00000003: "ERROR_PATH_NOT_FOUND",
	0x00000005: "ERROR_ACCESS_DENIED",
	0x00000006: "ERROR_INVALID_HANDLE",
	0x00000008: "ERROR_NOT_ENOUGH_MEMORY",
	0x0000000D: "ERROR_INVALID_DATA",
	0x00000032: "ERROR_NOT_SUPPORTED",
	0x00000057: "ERROR_INVALID_PARAMETER",
	0x0000007A: "ERROR_INSUFFICIENT_BUFFER",
	0x0000007B: "ERROR_INVALID_NAME",
	0x000000A1: "ERROR_BAD_PATHNAME",
	0x000000B7: "ERROR_ALREADY_EXISTS",
	0x000000EA: "ERROR_MORE_DATA",
	0x00000103: "ERROR_NO_MORE_ITEMS",
	0x00000420: "ERROR_SERVICE_ALREADY_RUNNING",
	0x00000426: "ERROR_SERVICE_NOT_ACTIVE",
	0x0000052E: "ERROR_LOGON_FAILURE",
	0x00000534: "ERROR_NONE_MAPPED",
	0x00000569: "ERROR_LOGON_TYPE_NOT_GRANTED",
	0x000006BA: "RPC_S_SERVER_UNAVAILABLE",
	0x000006D1: "RPC_S_PROCNUM_OUT_OF_RANGE",
	0x000006F7: "RPC_X_BAD_STUB_DATA",
}

// HRESULTName names an HRESULT, including HRESULT_FROM_WIN32 values
// (0x8007xxxx, named after their Win32 code), "" when unknown.
func HRESULTName(c uint32) string {
	if n, ok := hresultNames[c]; ok {
		return n
	}
	if c&0xFFFF0000 == 0x80070000 {
		return win32Names[c&0xFFFF]
	}
	return ""
}

// Win32ErrorName names a Win32 error code, "" when unknown.
func Win32ErrorName(c uint32) string { return win32Names[c] }
