package detect

import (
	"strings"
)

// taskFile is the stateless rule task_file_written_smb: a file written over
// SMB into a Tasks folder.
type taskFile struct{ observer string }

// sharePath returns a file operation's path (lower case, backslashes, no
// leading one) and share (upper case).
func sharePath(f *FileOp) (path, share string) {
	path = strings.ToLower(strings.ReplaceAll(f.Path, "/", `\`))
	path = strings.TrimPrefix(path, `\`)
	return path, strings.ToUpper(f.Share)
}

func (r taskFile) File(d *Alerts, f *FileOp) {
	path, share := sharePath(f)
	if f.Op == "write" && isTasksFolder(share, path) {
		d.publish(r.alert(f))
	}
}

func isTasksFolder(share, path string) bool {
	switch share {
	case "ADMIN$":
		return strings.HasPrefix(path, `tasks\`) || strings.HasPrefix(path, `system32\tasks\`)
	case "C$":
		return strings.HasPrefix(path, `windows\tasks\`) || strings.HasPrefix(path, `windows\system32\tasks\`)
	}
	return false
}

func (r taskFile) alert(f *FileOp) *Event {
	def := ruleBook(RuleTaskFile)
	src, dst, nw := endpoints(f.Endpoints)
	sev := def.severity
	reason := "file written into a Tasks folder; no task registration was seen with it"
	if strings.HasSuffix(strings.ToLower(f.Path), ".job") {
		sev = SeverityMedium
		reason = "legacy .job file written into the Tasks folder: the Task Scheduler loads it as a task"
	}
	ev := &Event{
		Timestamp: rfc3339(f.Time),
		Event: EventMeta{Kind: "alert", ID: eventID("alert:"+RuleTaskFile, FileKey(f), f.Dup),
			Category: []string{"intrusion_detection", "file"}, Type: []string{"info"}, Severity: sev,
			Dataset: "tschsensor.alert", Reason: reason},
		Observer:    Observer{Name: r.observer, Type: "sensor", Product: "tschsensor"},
		Source:      src,
		Destination: dst,
		Network:     nw,
		User:        userFields(f.User),
		Rule:        &RuleMeta{ID: RuleTaskFile, Name: def.name, Description: def.description, Ruleset: "tschsensor"},
		Threat:      &Threat{Framework: "MITRE ATT&CK", Technique: def.technique, Tactic: def.tactic},
		SMB:         smbFields(&f.SMB),
		File:        fileFields(f),
	}
	if f.PcapFile != "" {
		ev.Pcap = &Pcap{File: f.PcapFile, Frames: f.Frames}
	}
	return ev
}

func fileFields(f *FileOp) *FileFields {
	p := strings.ReplaceAll(f.Path, "/", `\`)
	ff := &FileFields{Path: p, Share: f.Share, Name: p}
	if i := strings.LastIndexByte(p, '\\'); i >= 0 {
		ff.Directory, ff.Name = p[:i], p[i+1:]
	}
	return ff
}
