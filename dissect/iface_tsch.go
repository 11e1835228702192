package dissect

// ITaskSchedulerService (MS-TSCH 3.2.5.4): the Task Scheduler 2.0 interface,
// on \pipe\atsvc and on a dynamic TCP port.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	tschitss "github.com/oiweiwei/go-msrpc/msrpc/tsch/itaskschedulerservice/v1"
	"github.com/oiweiwei/go-msrpc/ndr"
)

const uuidITaskSchedulerService = "86d35949-83c9-4044-b424-db363231fd0c"

// ITaskSchedulerService operations.
const (
	OpSchRpcHighestVersion = Op(IfaceITaskSchedulerService)<<16 + iota // opnum 0, then one more each line
	OpSchRpcRegisterTask
	OpSchRpcRetrieveTask
	OpSchRpcCreateFolder
	OpSchRpcSetSecurity
	OpSchRpcGetSecurity
	OpSchRpcEnumFolders
	OpSchRpcEnumTasks
	OpSchRpcEnumInstances
	OpSchRpcGetInstanceInfo
	OpSchRpcStopInstance
	OpSchRpcStop
	OpSchRpcRun
	OpSchRpcDelete
	OpSchRpcRename
	OpSchRpcScheduledRuntimes
	OpSchRpcGetLastRunInfo
	OpSchRpcGetTaskInfo
	OpSchRpcGetNumberOfMissedRuns
	OpSchRpcEnableTask
)

// Flags of SchRpcRegisterTask (MS-TSCH 3.2.5.4.2).
const (
	TaskValidateOnly = 0x1
	TaskCreate       = 0x2
	TaskUpdate       = 0x4
)

var itssInterface = Interface{
	Iface: IfaceITaskSchedulerService, Name: "ITaskSchedulerService", UUID: uuidITaskSchedulerService, Major: 1, Minor: 0,
	Ops: []Operation{
		{OpSchRpcHighestVersion, "SchRpcHighestVersion", itssHighestVersionRequest, decodeAs(itssHighestVersionResponse)},
		{OpSchRpcRegisterTask, "SchRpcRegisterTask", decodeAs(itssRegisterTaskRequest), decodeAs(itssRegisterTaskResponse)},
		{OpSchRpcRetrieveTask, "SchRpcRetrieveTask", decodeAs(itssRetrieveTaskRequest), decodeAs(itssRetrieveTaskResponse)},
		{OpSchRpcCreateFolder, "SchRpcCreateFolder", decodeAs(itssCreateFolderRequest), hresultOnly(func() (ndr.Unmarshaler, *int32) { r := &tschitss.CreateFolderResponse{}; return r, &r.Return })},
		{OpSchRpcSetSecurity, "SchRpcSetSecurity", decodeAs(itssSetSecurityRequest), hresultOnly(func() (ndr.Unmarshaler, *int32) { r := &tschitss.SetSecurityResponse{}; return r, &r.Return })},
		{OpSchRpcGetSecurity, "SchRpcGetSecurity", decodeAs(itssGetSecurityRequest), decodeAs(itssGetSecurityResponse)},
		{OpSchRpcEnumFolders, "SchRpcEnumFolders", decodeAs(itssEnumFoldersRequest), decodeAs(itssEnumFoldersResponse)},
		{OpSchRpcEnumTasks, "SchRpcEnumTasks", decodeAs(itssEnumTasksRequest), decodeAs(itssEnumTasksResponse)},
		{OpSchRpcEnumInstances, "SchRpcEnumInstances", decodeAs(itssEnumInstancesRequest), decodeAs(itssEnumInstancesResponse)},
		{OpSchRpcGetInstanceInfo, "SchRpcGetInstanceInfo", decodeAs(itssGetInstanceInfoRequest), decodeAs(itssGetInstanceInfoResponse)},
		{OpSchRpcStopInstance, "SchRpcStopInstance", decodeAs(itssStopInstanceRequest), hresultOnly(func() (ndr.Unmarshaler, *int32) { r := &tschitss.StopInstanceResponse{}; return r, &r.Return })},
		{OpSchRpcStop, "SchRpcStop", decodeAs(itssStopRequest), hresultOnly(func() (ndr.Unmarshaler, *int32) { r := &tschitss.StopResponse{}; return r, &r.Return })},
		{OpSchRpcRun, "SchRpcRun", decodeAs(itssRunRequest), decodeAs(itssRunResponse)},
		{OpSchRpcDelete, "SchRpcDelete", decodeAs(itssDeleteRequest), hresultOnly(func() (ndr.Unmarshaler, *int32) { r := &tschitss.DeleteResponse{}; return r, &r.Return })},
		{OpSchRpcRename, "SchRpcRename", decodeAs(itssRenameRequest), hresultOnly(func() (ndr.Unmarshaler, *int32) { r := &tschitss.RenameResponse{}; return r, &r.Return })},
		{OpSchRpcScheduledRuntimes, "SchRpcScheduledRuntimes", decodeAs(itssScheduledRuntimesRequest), decodeAs(itssScheduledRuntimesResponse)},
		{OpSchRpcGetLastRunInfo, "SchRpcGetLastRunInfo", decodeAs(itssGetLastRunInfoRequest), decodeAs(itssGetLastRunInfoResponse)},
		{OpSchRpcGetTaskInfo, "SchRpcGetTaskInfo", decodeAs(itssGetTaskInfoRequest), decodeAs(itssGetTaskInfoResponse)},
		{OpSchRpcGetNumberOfMissedRuns, "SchRpcGetNumberOfMissedRuns", decodeAs(itssGetNumberOfMissedRunsRequest), decodeAs(itssGetNumberOfMissedRunsResponse)},
		{OpSchRpcEnableTask, "SchRpcEnableTask", decodeAs(itssEnableTaskRequest), hresultOnly(func() (ndr.Unmarshaler, *int32) { r := &tschitss.EnableTaskResponse{}; return r, &r.Return })},
	},
}

var (
	registerFlagNames = []string{"TASK_VALIDATE_ONLY", "TASK_CREATE", "TASK_UPDATE", "TASK_DISABLE",
		"TASK_DONT_ADD_PRINCIPAL_ACE", "TASK_IGNORE_REGISTRATION_TRIGGERS"}
	runFlagNames = []string{"TASK_RUN_AS_SELF", "TASK_RUN_IGNORE_CONSTRAINTS", "TASK_RUN_USE_SESSION_ID",
		"TASK_RUN_USER_SID"}
	enumFlagNames  = []string{"TASK_ENUM_HIDDEN"}
	logonTypeNames = []string{"TASK_LOGON_NONE", "TASK_LOGON_PASSWORD", "TASK_LOGON_S4U",
		"TASK_LOGON_INTERACTIVE_TOKEN", "TASK_LOGON_GROUP", "TASK_LOGON_SERVICE_ACCOUNT",
		"TASK_LOGON_INTERACTIVE_TOKEN_OR_PASSWORD"}
	taskStateNames = []string{"TASK_STATE_UNKNOWN", "TASK_STATE_DISABLED", "TASK_STATE_QUEUED",
		"TASK_STATE_READY", "TASK_STATE_RUNNING"}
)

// maxTaskXMLParse bounds how much task XML is parsed, whatever is kept.
const maxTaskXMLParse = 4 << 20

// setXML keeps the task XML (cut at the limit), its digest over the whole
// string as received, and what ParseTaskXML reads from it.
func setXML(o TschOptions, t *TaskInfo, doc string) {
	sum := sha256.Sum256([]byte(doc))
	t.XMLSHA256 = hex.EncodeToString(sum[:])
	limit := o.xmlLimit()
	t.XML = doc
	if len(doc) > limit {
		t.XML, t.XMLTruncated = truncateUTF8(doc, limit), true
	}
	// The raw copy is cut at the limit, the parse is not: padding the XML
	// (a long description, whitespace, comments) must not push the actions
	// out of sight. The stub itself is bounded by the sensor (max-stub), and
	// the parser bounds depth and element count.
	parsed, err := ParseTaskXML(doc, max(limit, maxTaskXMLParse))
	if err != nil {
		t.XMLParseError = err.Error()
	}
	if parsed == nil {
		return
	}
	t.Command, t.Arguments, t.WorkingDirectory = parsed.Command, parsed.Arguments, parsed.WorkingDirectory
	t.RunAs, t.Hidden, t.Enabled = parsed.RunAs, parsed.Hidden, parsed.Enabled
	t.LogonType, t.RunLevel = parsed.LogonType, parsed.RunLevel
	t.Actions, t.ActionsTruncated = parsed.Actions, parsed.ActionsTruncated
	t.Triggers, t.TriggersTruncated = parsed.Triggers, parsed.TriggersTruncated
	t.Author, t.Description, t.URI, t.Date = parsed.Author, parsed.Description, parsed.URI, parsed.Date
	t.XMLMalformed = parsed.XMLMalformed
}

// hresultOnly decodes a response that answers with an HRESULT alone; each
// has its own go-msrpc type only to unmarshal that one value.
func hresultOnly(newResp func() (ndr.Unmarshaler, *int32)) stubDecoder {
	return func(d ndrDec, _ TschOptions, out *TschInfo) error {
		resp, ret := newResp()
		if err := d.unmarshal(resp); err != nil {
			return err
		}
		out.setHRESULT(*ret)
		return nil
	}
}

// itssHighestVersionRequest: the request has no [in] parameter, so there
// is nothing to decode (go-msrpc's decoder reads nothing either); not
// building a decoder matters when a flood repeats it.
func itssHighestVersionRequest(ndrDec, TschOptions, *TschInfo) error { return nil }

func itssHighestVersionResponse(resp *tschitss.HighestVersionResponse, _ TschOptions, out *TschInfo) {
	out.Version = fmt.Sprintf("%d.%d", resp.Version>>16, resp.Version&0xffff)
	out.setHRESULT(resp.Return)
}

func itssRegisterTaskRequest(req *tschitss.RegisterTaskRequest, o TschOptions, out *TschInfo) {
	t := out.task()
	t.Path = req.Path
	setXML(o, t, req.XML)
	reg := &RegisterInfo{
		Flags:            req.Flags,
		FlagsNames:       flagNames(req.Flags, registerFlagNames),
		SDDL:             req.SDDL,
		LogonType:        enumName(req.LogonType, logonTypeNames, "TASK_LOGON_TYPE"),
		CredentialsCount: req.CredsCount,
	}
	for _, c := range req.Creds {
		if c == nil {
			continue
		}
		if len(reg.CredentialUsers) == maxTschCredentials {
			break
		}
		reg.CredentialUsers = append(reg.CredentialUsers, c.UserID)
	}
	out.Register = reg
}

func itssRegisterTaskResponse(resp *tschitss.RegisterTaskResponse, _ TschOptions, out *TschInfo) {
	if out.Register == nil {
		out.Register = &RegisterInfo{}
	}
	out.Register.ActualPath = resp.ActualPath
	if e := resp.ErrorInfo; e != nil {
		out.Register.ErrorInfo = &XMLErrorInfo{Line: e.Line, Column: e.Column, Node: e.Node, Value: e.Value}
	}
	out.setHRESULT(resp.Return)
}

func itssRetrieveTaskRequest(req *tschitss.RetrieveTaskRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
}

func itssRetrieveTaskResponse(resp *tschitss.RetrieveTaskResponse, o TschOptions, out *TschInfo) {
	if resp.XML != "" {
		setXML(o, out.task(), resp.XML)
	}
	out.setHRESULT(resp.Return)
}

func itssCreateFolderRequest(req *tschitss.CreateFolderRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Security = &SecurityInfo{SDDL: req.SDDL, Flags: req.Flags}
}

func itssSetSecurityRequest(req *tschitss.SetSecurityRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Security = &SecurityInfo{SDDL: req.SDDL, Flags: req.Flags}
}

func itssGetSecurityRequest(req *tschitss.GetSecurityRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Security = &SecurityInfo{SecurityInformation: req.SecurityInformation}
}

func itssGetSecurityResponse(resp *tschitss.GetSecurityResponse, _ TschOptions, out *TschInfo) {
	if out.Security == nil {
		out.Security = &SecurityInfo{}
	}
	out.Security.SDDL = resp.SDDL
	out.setHRESULT(resp.Return)
}

func itssEnumFoldersRequest(req *tschitss.EnumFoldersRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Enum = &EnumInfo{Flags: req.Flags, FlagsNames: flagNames(req.Flags, enumFlagNames),
		StartIndex: ptr(req.StartIndex), RequestedCount: req.RequestedCount}
}

func itssEnumTasksRequest(req *tschitss.EnumTasksRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Enum = &EnumInfo{Flags: req.Flags, FlagsNames: flagNames(req.Flags, enumFlagNames),
		StartIndex: ptr(req.StartIndex), RequestedCount: req.RequestedCount}
}

func itssEnumFoldersResponse(resp *tschitss.EnumFoldersResponse, o TschOptions, out *TschInfo) {
	setEnumNames(o, out, resp.Names, resp.StartIndex, resp.NamesCount, resp.Return)
}

func itssEnumTasksResponse(resp *tschitss.EnumTasksResponse, o TschOptions, out *TschInfo) {
	setEnumNames(o, out, resp.Names, resp.StartIndex, resp.NamesCount, resp.Return)
}

func setEnumNames(o TschOptions, out *TschInfo, names []string, start, count uint32, ret int32) {
	if out.Enum == nil {
		out.Enum = &EnumInfo{}
	}
	e := out.Enum
	e.StartIndex, e.Count = ptr(start), ptr(count)
	e.Names, e.Truncated = boundStrings(names, o.listLimit())
	out.setHRESULT(ret)
}

func itssEnumInstancesRequest(req *tschitss.EnumInstancesRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Enum = &EnumInfo{Flags: req.Flags, FlagsNames: flagNames(req.Flags, enumFlagNames)}
}

func itssEnumInstancesResponse(resp *tschitss.EnumInstancesResponse, o TschOptions, out *TschInfo) {
	if out.Enum == nil {
		out.Enum = &EnumInfo{}
	}
	e := out.Enum
	e.Count = ptr(resp.GUIDsCount)
	e.Instances, e.Truncated = boundGUIDs(resp.GUIDs, o.listLimit())
	out.setHRESULT(resp.Return)
}

func itssGetInstanceInfoRequest(req *tschitss.GetInstanceInfoRequest, _ TschOptions, out *TschInfo) {
	out.Instance = &InstanceInfo{GUID: formatGUID(req.GUID)}
}

func itssGetInstanceInfoResponse(resp *tschitss.GetInstanceInfoResponse, o TschOptions, out *TschInfo) {
	if out.Instance == nil {
		out.Instance = &InstanceInfo{}
	}
	in := out.Instance
	in.Path, in.State = resp.Path, enumName(resp.State, taskStateNames, "TASK_STATE")
	in.CurrentAction, in.Info, in.EnginePID = resp.CurrentAction, resp.Info, resp.EnginePID
	in.GroupInstances, _ = boundGUIDs(resp.GroupInstances, o.listLimit())
	out.setHRESULT(resp.Return)
}

func itssStopInstanceRequest(req *tschitss.StopInstanceRequest, _ TschOptions, out *TschInfo) {
	out.Instance = &InstanceInfo{GUID: formatGUID(req.GUID), Flags: req.Flags}
}

func itssStopRequest(req *tschitss.StopRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Flags = ptr(req.Flags)
}

func itssRunRequest(req *tschitss.RunRequest, o TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	run := &RunInfo{ArgumentsCount: req.ArgsCount, Flags: req.Flags,
		FlagsNames: flagNames(req.Flags, runFlagNames), SessionID: req.SessionID, User: req.User}
	run.Arguments, run.ArgumentsTruncated = boundStrings(req.Args, o.listLimit())
	out.Run = run
}

func itssRunResponse(resp *tschitss.RunResponse, _ TschOptions, out *TschInfo) {
	if out.Run == nil {
		out.Run = &RunInfo{}
	}
	out.Run.InstanceGUID = formatGUID(resp.GUID)
	out.setHRESULT(resp.Return)
}

func itssDeleteRequest(req *tschitss.DeleteRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Flags = ptr(req.Flags)
}

func itssRenameRequest(req *tschitss.RenameRequest, _ TschOptions, out *TschInfo) {
	t := out.task()
	t.Path, t.NewPath, out.Flags = req.Path, req.NewName, ptr(req.Flags)
}

func itssScheduledRuntimesRequest(req *tschitss.ScheduledRuntimesRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Runtimes = &RuntimesInfo{Start: formatSystemTime(req.Start), End: formatSystemTime(req.End),
		Flags: req.Flags, RequestedCount: req.RequestedCount}
}

func itssScheduledRuntimesResponse(resp *tschitss.ScheduledRuntimesResponse, o TschOptions, out *TschInfo) {
	if out.Runtimes == nil {
		out.Runtimes = &RuntimesInfo{}
	}
	rt := out.Runtimes
	rt.Count = ptr(resp.RuntimesCount)
	for _, st := range resp.Runtimes {
		if len(rt.Runtimes) == o.listLimit() {
			rt.Truncated = true
			break
		}
		rt.Runtimes = append(rt.Runtimes, formatSystemTime(st))
	}
	out.setHRESULT(resp.Return)
}

func itssGetLastRunInfoRequest(req *tschitss.GetLastRunInfoRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
}

func itssGetLastRunInfoResponse(resp *tschitss.GetLastRunInfoResponse, _ TschOptions, out *TschInfo) {
	out.LastRun = &LastRunInfo{Time: formatSystemTime(resp.LastRuntime), ReturnCode: resp.LastReturnCode,
		ReturnCodeName: HRESULTName(resp.LastReturnCode)}
	out.setHRESULT(resp.Return)
}

func itssGetTaskInfoRequest(req *tschitss.GetTaskInfoRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
	out.Flags = ptr(req.Flags)
}

func itssGetTaskInfoResponse(resp *tschitss.GetTaskInfoResponse, _ TschOptions, out *TschInfo) {
	t := out.task()
	t.Enabled, t.State = ptr(resp.Enabled != 0), enumName(resp.State, taskStateNames, "TASK_STATE")
	out.setHRESULT(resp.Return)
}

func itssGetNumberOfMissedRunsRequest(req *tschitss.GetNumberOfMissedRunsRequest, _ TschOptions, out *TschInfo) {
	out.setPath(req.Path)
}

func itssGetNumberOfMissedRunsResponse(resp *tschitss.GetNumberOfMissedRunsResponse, _ TschOptions, out *TschInfo) {
	out.MissedRuns = ptr(resp.NumberOfMissedRuns)
	out.setHRESULT(resp.Return)
}

func itssEnableTaskRequest(req *tschitss.EnableTaskRequest, _ TschOptions, out *TschInfo) {
	t := out.task()
	t.Path, t.Enabled = req.Path, ptr(req.Enabled != 0)
}
