package dissect

// ATSVC (MS-TSCH 3.2.5.2): the AT service, \pipe\atsvc.

import (
	"fmt"

	tschatsvc "github.com/oiweiwei/go-msrpc/msrpc/tsch/atsvc/v1"
)

const uuidATSVC = "1ff70682-0a51-30e8-076d-740be8cee98b"

// ATSVC operations.
const (
	OpNetrJobAdd = Op(IfaceATSVC)<<16 + iota // opnum 0, then one more each line
	OpNetrJobDel
	OpNetrJobEnum
	OpNetrJobGetInfo
)

var atsvcInterface = Interface{
	Iface: IfaceATSVC, Name: "ATSVC", UUID: uuidATSVC, Major: 1, Minor: 0,
	prepare: func(out *TschInfo) { out.job() },
	Ops: []Operation{
		{OpNetrJobAdd, "NetrJobAdd", decodeAs(atsvcJobAddRequest), decodeAs(atsvcJobAddResponse)},
		{OpNetrJobDel, "NetrJobDel", decodeAs(atsvcJobDelRequest), decodeAs(atsvcJobDelResponse)},
		{OpNetrJobEnum, "NetrJobEnum", decodeAs(atsvcJobEnumRequest), decodeAs(atsvcJobEnumResponse)},
		{OpNetrJobGetInfo, "NetrJobGetInfo", decodeAs(atsvcJobGetInfoRequest), decodeAs(atsvcJobGetInfoResponse)},
	},
}

func atsvcJobAddRequest(req *tschatsvc.JobAddRequest, _ TschOptions, out *TschInfo) {
	j := out.job()
	j.ServerName = req.ServerName
	if req.ATInfo != nil {
		j.JobSchedule = jobSchedule(req.ATInfo.JobTime, req.ATInfo.DaysOfMonth, req.ATInfo.DaysOfWeek, req.ATInfo.Flags)
		out.task().Command = req.ATInfo.Command
	}
}

func atsvcJobAddResponse(resp *tschatsvc.JobAddResponse, _ TschOptions, out *TschInfo) {
	out.job().JobID = ptr(resp.JobID)
	out.setWin32(resp.Return)
}

func atsvcJobDelRequest(req *tschatsvc.JobDeleteRequest, _ TschOptions, out *TschInfo) {
	j := out.job()
	j.ServerName, j.MinJobID, j.MaxJobID = req.ServerName, ptr(req.MinJobID), ptr(req.MaxJobID)
}

func atsvcJobDelResponse(resp *tschatsvc.JobDeleteResponse, _ TschOptions, out *TschInfo) {
	out.setWin32(resp.Return)
}

func atsvcJobEnumRequest(req *tschatsvc.JobEnumRequest, _ TschOptions, out *TschInfo) {
	j := out.job()
	j.ServerName, j.PreferredMaximumLength, j.ResumeHandle = req.ServerName, req.PreferredMaximumLength, ptr(req.Resume)
}

func atsvcJobEnumResponse(resp *tschatsvc.JobEnumResponse, o TschOptions, out *TschInfo) {
	j := out.job()
	j.TotalEntries, j.ResumeHandle = ptr(resp.TotalEntries), ptr(resp.Resume)
	if c := resp.EnumContainer; c != nil {
		j.EntriesRead = ptr(c.EntriesRead)
		for _, e := range c.Buffer {
			if e == nil {
				continue
			}
			if len(j.Jobs) == o.listLimit() {
				j.JobsTruncated = true
				break
			}
			j.Jobs = append(j.Jobs, JobEntry{
				JobID:       e.JobID,
				JobSchedule: jobSchedule(e.JobTime, e.DaysOfMonth, e.DaysOfWeek, e.Flags),
				Command:     e.Command,
			})
		}
	}
	out.setWin32(resp.Return)
}

func atsvcJobGetInfoRequest(req *tschatsvc.JobGetInfoRequest, _ TschOptions, out *TschInfo) {
	j := out.job()
	j.ServerName, j.JobID = req.ServerName, ptr(req.JobID)
}

func atsvcJobGetInfoResponse(resp *tschatsvc.JobGetInfoResponse, _ TschOptions, out *TschInfo) {
	if a := resp.ATInfo; a != nil {
		out.job().JobSchedule = jobSchedule(a.JobTime, a.DaysOfMonth, a.DaysOfWeek, a.Flags)
		out.task().Command = a.Command
	}
	out.setWin32(resp.Return)
}

var (
	jobFlagNames = []string{"JOB_RUN_PERIODICALLY", "JOB_EXEC_ERROR", "JOB_RUNS_TODAY",
		"JOB_ADD_CURRENT_DATE", "JOB_NONINTERACTIVE"}
	weekdayNames = []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
)

// jobSchedule spells out AT_INFO: JobTime is milliseconds after midnight,
// DaysOfMonth bit n is day n+1, DaysOfWeek bit 0 is Monday.
func jobSchedule(ms uint64, dom uint32, dow, flags uint8) JobSchedule {
	s := JobSchedule{JobTimeMS: ptr(ms), Flags: flags, FlagsNames: flagNames(uint32(flags), jobFlagNames)}
	if ms < 24*3600*1000 {
		s.JobTime = fmt.Sprintf("%02d:%02d", ms/3600000, ms/60000%60)
	}
	for d := 0; d < 31; d++ {
		if dom&(1<<d) != 0 {
			s.DaysOfMonth = append(s.DaysOfMonth, d+1)
		}
	}
	for d := 0; d < 7; d++ {
		if dow&(1<<d) != 0 {
			s.DaysOfWeek = append(s.DaysOfWeek, weekdayNames[d])
		}
	}
	return s
}
