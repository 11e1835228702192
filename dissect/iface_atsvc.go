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
		{OpNetrJobAdd, "NetrJobAdd", atsvcJobAddRequest, atsvcJobAddResponse},
		{OpNetrJobDel, "NetrJobDel", atsvcJobDelRequest, atsvcJobDelResponse},
		{OpNetrJobEnum, "NetrJobEnum", atsvcJobEnumRequest, atsvcJobEnumResponse},
		{OpNetrJobGetInfo, "NetrJobGetInfo", atsvcJobGetInfoRequest, atsvcJobGetInfoResponse},
	},
}

func atsvcJobAddRequest(d ndrDec, _ TschOptions, out *TschInfo) error {
	var req tschatsvc.JobAddRequest
	if err := d.unmarshal(&req); err != nil {
		return err
	}
	j := out.job()
	j.ServerName = req.ServerName
	if req.ATInfo != nil {
		j.JobSchedule = jobSchedule(req.ATInfo.JobTime, req.ATInfo.DaysOfMonth, req.ATInfo.DaysOfWeek, req.ATInfo.Flags)
		out.task().Command = req.ATInfo.Command
	}
	return nil
}

func atsvcJobAddResponse(d ndrDec, _ TschOptions, out *TschInfo) error {
	var resp tschatsvc.JobAddResponse
	if err := d.unmarshal(&resp); err != nil {
		return err
	}
	out.job().JobID = ptr(resp.JobID)
	out.setWin32(resp.Return)
	return nil
}

func atsvcJobDelRequest(d ndrDec, _ TschOptions, out *TschInfo) error {
	var req tschatsvc.JobDeleteRequest
	if err := d.unmarshal(&req); err != nil {
		return err
	}
	j := out.job()
	j.ServerName, j.MinJobID, j.MaxJobID = req.ServerName, ptr(req.MinJobID), ptr(req.MaxJobID)
	return nil
}

func atsvcJobDelResponse(d ndrDec, _ TschOptions, out *TschInfo) error {
	var resp tschatsvc.JobDeleteResponse
	if err := d.unmarshal(&resp); err != nil {
		return err
	}
	out.setWin32(resp.Return)
	return nil
}

func atsvcJobEnumRequest(d ndrDec, _ TschOptions, out *TschInfo) error {
	var req tschatsvc.JobEnumRequest
	if err := d.unmarshal(&req); err != nil {
		return err
	}
	j := out.job()
	j.ServerName, j.PreferredMaximumLength, j.ResumeHandle = req.ServerName, req.PreferredMaximumLength, ptr(req.Resume)
	return nil
}

func atsvcJobEnumResponse(d ndrDec, o TschOptions, out *TschInfo) error {
	var resp tschatsvc.JobEnumResponse
	if err := d.unmarshal(&resp); err != nil {
		return err
	}
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
	return nil
}

func atsvcJobGetInfoRequest(d ndrDec, _ TschOptions, out *TschInfo) error {
	var req tschatsvc.JobGetInfoRequest
	if err := d.unmarshal(&req); err != nil {
		return err
	}
	j := out.job()
	j.ServerName, j.JobID = req.ServerName, ptr(req.JobID)
	return nil
}

func atsvcJobGetInfoResponse(d ndrDec, _ TschOptions, out *TschInfo) error {
	var resp tschatsvc.JobGetInfoResponse
	if err := d.unmarshal(&resp); err != nil {
		return err
	}
	if a := resp.ATInfo; a != nil {
		out.job().JobSchedule = jobSchedule(a.JobTime, a.DaysOfMonth, a.DaysOfWeek, a.Flags)
		out.task().Command = a.Command
	}
	out.setWin32(resp.Return)
	return nil
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
