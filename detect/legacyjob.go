package detect

import (
	"net/netip"
	"strings"
	"time"

	"github.com/tschsensor/tschsensor/dissect"
)

// legacyJob is the stateful rule legacy_task_created: the Task Scheduler
// 1.0 path MS-TSCH describes, a .job file written into the Tasks folder over
// SMB and SASetAccountInformation naming that job, by one client on one
// server within the window, is one task creation. Either may come first
// (the file is reported when its handle closes). Pending halves are bounded
// by Options.MaxPairs each.
type legacyJob struct {
	window time.Duration
	max    int
	files  map[jobKey]*FileOp
	calls  map[jobKey]pendingCall
}

type jobKey struct {
	client, server netip.Addr
	name           string // the job's file name, lower case ("at1.job")
}

type pendingCall struct {
	c  *Call
	ev *Event
}

func newLegacyJob(opt Options) *legacyJob {
	return &legacyJob{window: opt.AtExecWindow, max: opt.MaxPairs,
		files: make(map[jobKey]*FileOp), calls: make(map[jobKey]pendingCall)}
}

func jobName(p string) string {
	p = strings.ReplaceAll(p, "/", `\`)
	if i := strings.LastIndexByte(p, '\\'); i >= 0 {
		p = p[i+1:]
	}
	return strings.ToLower(p)
}

func (r *legacyJob) File(a *Alerts, f *FileOp) {
	path, share := sharePath(f)
	if f.Op != "write" || !isTasksFolder(share, path) || !strings.HasSuffix(path, ".job") {
		return
	}
	k := jobKey{f.Client, f.Server, jobName(path)}
	if pc, ok := r.calls[k]; ok && f.Time.Sub(pc.c.Time) <= r.window {
		delete(r.calls, k)
		r.alert(a, pc.c, pc.ev, f)
		return
	}
	if len(r.files) >= r.max {
		r.expire(f.Time)
	}
	if len(r.files) < r.max {
		r.files[k] = f
	}
}

func (r *legacyJob) Call(a *Alerts, c *Call, ev *Event) {
	if c.Op() != dissect.OpSASetAccountInformation || c.Tsch == nil || c.Tsch.Account == nil || c.Tsch.Account.JobName == "" {
		return
	}
	k := jobKey{c.Client, c.Server, jobName(c.Tsch.Account.JobName)}
	if f, ok := r.files[k]; ok && c.Time.Sub(f.Time) <= r.window {
		delete(r.files, k)
		r.alert(a, c, ev, f)
		return
	}
	if len(r.calls) >= r.max {
		r.expire(c.Time)
	}
	if len(r.calls) < r.max {
		r.calls[k] = pendingCall{c, ev}
	}
}

// expire drops the halves whose window has passed.
func (r *legacyJob) expire(now time.Time) {
	for k, f := range r.files {
		if now.Sub(f.Time) > r.window {
			delete(r.files, k)
		}
	}
	for k, pc := range r.calls {
		if now.Sub(pc.c.Time) > r.window {
			delete(r.calls, k)
		}
	}
}

// alert raises the one alert of a legacy task creation, built on the
// SASetAccountInformation call, with the job's file and, when its bytes
// were visible, the command it runs.
func (r *legacyJob) alert(a *Alerts, c *Call, ev *Event, f *FileOp) {
	al := a.newAlert(RuleLegacyTask, c, ev, []string{ev.Event.ID}, nil)
	why := []string{".job file " + f.Path + " written into the Tasks folder over SMB",
		"account " + c.Tsch.Account.AccountName + " set on it with SASetAccountInformation"}
	al.File = fileFields(f)
	// The call's tsch object is shared with its event: the alert gets a
	// copy that adds what the .job file says.
	t := *c.Tsch
	task := dissect.TaskInfo{}
	if c.Tsch.Task != nil {
		task = *c.Tsch.Task
	}
	if j, err := dissect.ParseJobFile(f.Data); j != nil && j.ApplicationName != "" {
		task.Command, task.Arguments, task.WorkingDirectory = j.ApplicationName, j.Parameters, j.WorkingDirectory
		task.Author, task.Description = j.Author, j.Comment
		why = append(why, "runs "+strings.TrimSpace(j.ApplicationName+" "+j.Parameters))
		if err != nil {
			why = append(why, "job file cut: "+err.Error())
		}
	} else if len(f.Data) > 0 && err != nil {
		// Counted as the anomaly smb_job_file_malformed by the sensor.
		why = append(why, "job file not readable: "+err.Error())
	} else {
		why = append(why, "job file contents not visible")
	}
	t.Task = &task
	al.Tsch = &t
	al.Event.Reason = strings.Join(why, "; ")
	al.Event.Type = []string{"creation"}
	a.publish(al)
}

func (r *legacyJob) Advance(*Alerts, time.Time) {}

func (r *legacyJob) Flush(*Alerts) {
	clear(r.files)
	clear(r.calls)
}
