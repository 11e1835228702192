package detect

import (
	"strconv"

	"cel.dev/cel-go/common/types"

	"github.com/tschsensor/tschsensor/dissect"
)

// Custom rules on SMB file operations (`on: file`). A file operation is not
// printed as an event of its own; a condition sees it as the event below,
// with the fields task_file_written_smb prints, and an alert raised on it
// has that alert's shape.

// fileEvent renders a file operation for custom rule conditions:
// event.action is the operation (read, write, delete), file.* and smb.* as
// task_file_written_smb prints them, and for a .job file whose bytes were
// seen, tsch.task holds what it runs.
func fileEvent(f *FileOp, observer string) *Event {
	src, dst, nw := endpoints(f.Endpoints)
	ev := &Event{
		Timestamp: rfc3339(f.Time),
		Event: EventMeta{Kind: "event", Category: []string{"file"}, Type: []string{fileEventType(f.Op)}, Action: f.Op,
			Dataset: "tschsensor.file"},
		Observer:    Observer{Name: observer, Type: "sensor", Product: "tschsensor"},
		Source:      src,
		Destination: dst,
		Network:     nw,
		User:        userFields(f.User),
		SMB:         smbFields(&f.SMB),
		File:        fileFields(f),
	}
	switch f.Op {
	case "read":
		ev.File.BytesRead = f.Bytes
	case "delete":
		ev.File.Deleted = true
	}
	if f.PcapFile != "" {
		ev.Pcap = &Pcap{File: f.PcapFile, Frames: f.Frames}
	}
	if j, _ := dissect.ParseJobFile(f.Data); j != nil && j.ApplicationName != "" {
		ev.Tsch = &dissect.TschInfo{Task: &dissect.TaskInfo{Path: ev.File.Path, Command: j.ApplicationName,
			Arguments: j.Parameters, WorkingDirectory: j.WorkingDirectory, Author: j.Author, Description: j.Comment}}
	}
	return ev
}

func fileEventType(op string) string {
	switch op {
	case "write":
		return "change"
	case "delete":
		return "deletion"
	}
	return "access"
}

// fileAlertFrom builds a rule's alert on a file operation and its event.
func fileAlertFrom(def ruleDef, f *FileOp, ev *Event) *Event {
	a := &Event{
		Timestamp: ev.Timestamp,
		Event: EventMeta{Kind: "alert", ID: eventID("alert:"+def.id, FileKey(f), f.Dup),
			Category: []string{"intrusion_detection", "file"}, Type: []string{"info"}, Action: f.Op,
			Severity: def.severity, Dataset: "tschsensor.alert"},
		Observer:    ev.Observer,
		Source:      ev.Source,
		Destination: ev.Destination,
		Network:     ev.Network,
		User:        ev.User,
		Rule: &RuleMeta{ID: def.id, Name: def.name, Description: def.description, Ruleset: def.ruleset,
			Reference: def.technique.Reference},
		Threat:  &Threat{Framework: "MITRE ATT&CK", Technique: def.technique, Tactic: def.tactic},
		SMB:     ev.SMB,
		Tsch:    ev.Tsch,
		File:    ev.File,
		Related: &Related{IP: []string{ev.Source.IP, ev.Destination.IP}},
		Pcap:    ev.Pcap,
		Tags:    def.tags,
	}
	if ev.User != nil && ev.User.Name != "" {
		a.Related.User = []string{ev.User.Name}
	}
	return a
}

// customFile runs the custom rules written for file operations.
func (rs *Ruleset) customFile(a *Alerts, f *FileOp, observer string) {
	if rs.fileRules == 0 {
		return
	}
	ev := fileEvent(f, observer)
	vars, err := celVars(ev)
	if err != nil {
		return
	}
	for _, r := range rs.customs {
		if !r.onFile {
			continue
		}
		out, _, err := r.prg.Eval(vars)
		if err != nil || out != types.True {
			continue
		}
		al := fileAlertFrom(r.def, f, ev)
		al.Event.Reason = "custom rule " + r.def.id + " (" + rs.file + ":" + strconv.Itoa(r.line) + ")"
		a.publish(al)
	}
}
