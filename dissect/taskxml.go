package dissect

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// TaskXMLNamespace is the namespace of a Task Scheduler 2.0 task definition
// (MS-TSCH 2.5). ParseTaskXML matches elements by local name whatever their
// namespace: a definition without the namespace is still worth reading, and
// the server's verdict on it arrives in the response's return code.
const TaskXMLNamespace = "http://schemas.microsoft.com/windows/2004/02/mit/task"

// Bounds of ParseTaskXML. The schema allows 32 actions and 48 triggers; a
// real definition is a few KiB nested 5 deep.
const (
	DefaultTaskXMLLimit = 64 << 10 // bytes of XML parsed and kept in task.xml
	maxTaskXMLDepth     = 64       // element nesting
	maxTaskXMLElements  = 8192     // start elements
	maxTaskActions      = 64
	maxTaskTriggers     = 64
	maxTaskPrincipals   = 16
	maxTaskXMLText      = 32 << 10 // bytes of one element's text
)

var errTaskXMLDepth = fmt.Errorf("%w: task xml nesting deeper than %d", ErrLimit, maxTaskXMLDepth)

// TaskAction is one entry of a task's Actions (MS-TSCH 2.5.9).
type TaskAction struct {
	Type             string `json:"type"` // exec, com_handler, send_email, show_message
	ID               string `json:"id,omitempty"`
	Command          string `json:"command,omitempty"`
	Arguments        string `json:"arguments,omitempty"`
	WorkingDirectory string `json:"working_directory,omitempty"`
	ClassID          string `json:"class_id,omitempty"`
	Data             string `json:"data,omitempty"`
	Server           string `json:"server,omitempty"`
	From             string `json:"from,omitempty"`
	To               string `json:"to,omitempty"`
	Subject          string `json:"subject,omitempty"`
	Title            string `json:"title,omitempty"`
	Body             string `json:"body,omitempty"`
}

// TaskTrigger is one entry of a task's Triggers (MS-TSCH 2.5.3).
type TaskTrigger struct {
	Type               string `json:"type"` // boot, logon, time, calendar, event, idle, registration, session_state_change, ...
	ID                 string `json:"id,omitempty"`
	StartBoundary      string `json:"start_boundary,omitempty"`
	EndBoundary        string `json:"end_boundary,omitempty"`
	Enabled            *bool  `json:"enabled,omitempty"`
	RepetitionInterval string `json:"repetition_interval,omitempty"`
	RepetitionDuration string `json:"repetition_duration,omitempty"`
	Delay              string `json:"delay,omitempty"`
	RandomDelay        string `json:"random_delay,omitempty"`
	UserID             string `json:"user_id,omitempty"`
	Subscription       string `json:"subscription,omitempty"`
	StateChange        string `json:"state_change,omitempty"`
	Schedule           string `json:"schedule,omitempty"` // calendar: by_day, by_week, by_month, by_month_day_of_week
}

// taskPrincipal is a Principals/Principal element; the one the Actions
// Context names (or the first) becomes the task's run_as.
type taskPrincipal struct {
	id, userID, groupID, logonType, runLevel string
}

// ParseTaskXML reads the fields an investigator needs from a task
// definition. The input is cut at limit bytes (DefaultTaskXMLLimit if
// limit <= 0); invalid UTF-8 and characters XML forbids are replaced by
// U+FFFD rather than refused, and the declared encoding is ignored because
// the string is already decoded (the wire carries UTF-16, the declaration
// says so). On a syntax error or a breached bound it returns what was read
// so far together with the error, so a partly valid definition still shows
// its command.
func ParseTaskXML(doc string, limit int) (*TaskInfo, error) {
	t := &TaskInfo{}
	if limit <= 0 {
		limit = DefaultTaskXMLLimit
	}
	cut := false
	if len(doc) > limit {
		doc = truncateUTF8(doc, limit)
		cut = true
	}
	doc = sanitizeXMLText(doc)

	p := taskXMLParser{t: t}
	err := p.run(doc)
	p.finish()
	if err != nil {
		if cut && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isXMLEOF(err)) {
			return t, errAt("taskxml", limit, ErrLimit, "task xml cut at %d bytes", limit)
		}
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			return t, errAt("taskxml", int(p.offset), ErrMalformed, "line %d: %s", se.Line, se.Msg)
		}
		var le *Error
		if errors.As(err, &le) {
			return t, err
		}
		return t, errAt("taskxml", int(p.offset), ErrMalformed, "%v", err)
	}
	if cut {
		return t, errAt("taskxml", limit, ErrLimit, "task xml cut at %d bytes", limit)
	}
	return t, nil
}

// isXMLEOF tells whether encoding/xml gave up because the document ended
// early (it reports that as a SyntaxError, not as io.ErrUnexpectedEOF).
func isXMLEOF(err error) bool {
	var se *xml.SyntaxError
	return errors.As(err, &se) && strings.HasPrefix(se.Msg, "unexpected EOF")
}

type taskXMLParser struct {
	t          *TaskInfo
	root       string
	stack      [maxTaskXMLDepth]string
	depth      int
	elements   int
	offset     int64
	text       strings.Builder
	principals []taskPrincipal
	context    string // Actions Context attribute: the principal id actions run as
	action     *TaskAction
	trigger    *TaskTrigger
	principal  *taskPrincipal
}

func (p *taskXMLParser) run(doc string) error {
	d := xml.NewDecoder(strings.NewReader(doc))
	// The string is UTF-8 whatever the declaration claims.
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	for {
		p.offset = d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			switch {
			case p.depth != 0:
				return io.ErrUnexpectedEOF
			case p.root == "":
				return errors.New("no root element")
			case p.root != "Task":
				return fmt.Errorf("root element %q is not Task", p.root)
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			p.elements++
			if p.elements > maxTaskXMLElements {
				return errAt("taskxml", int(p.offset), ErrLimit, "more than %d elements", maxTaskXMLElements)
			}
			if p.depth == maxTaskXMLDepth {
				return errAt("taskxml", int(p.offset), errTaskXMLDepth, "")
			}
			if p.depth == 0 && p.root == "" {
				p.root = tok.Name.Local
			}
			p.stack[p.depth] = tok.Name.Local
			p.depth++
			p.text.Reset()
			p.start(tok)
		case xml.EndElement:
			if p.depth == 0 {
				return errors.New("unbalanced end element")
			}
			p.end(strings.TrimSpace(p.text.String()))
			p.text.Reset()
			p.depth--
		case xml.CharData:
			if p.text.Len()+len(tok) <= maxTaskXMLText {
				p.text.Write(tok)
			}
		}
	}
}

// at reports whether the open elements, from the root, are exactly path.
func (p *taskXMLParser) at(path ...string) bool {
	if p.depth != len(path) {
		return false
	}
	for i, s := range path {
		if p.stack[i] != s {
			return false
		}
	}
	return true
}

// under reports whether the open elements start with path and go n deeper.
func (p *taskXMLParser) under(n int, path ...string) bool {
	if p.depth != len(path)+n {
		return false
	}
	for i, s := range path {
		if p.stack[i] != s {
			return false
		}
	}
	return true
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (p *taskXMLParser) start(se xml.StartElement) {
	switch {
	case p.at("Task", "Actions"):
		p.context = attr(se, "Context")
	case p.under(1, "Task", "Actions"):
		p.action = nil
		if len(p.t.Actions) >= maxTaskActions {
			p.t.ActionsTruncated = true
			return
		}
		p.t.Actions = append(p.t.Actions, TaskAction{Type: taskActionType(se.Name.Local), ID: attr(se, "id")})
		p.action = &p.t.Actions[len(p.t.Actions)-1]
	case p.under(1, "Task", "Triggers"):
		p.trigger = nil
		if len(p.t.Triggers) >= maxTaskTriggers {
			p.t.TriggersTruncated = true
			return
		}
		p.t.Triggers = append(p.t.Triggers, TaskTrigger{Type: taskTriggerType(se.Name.Local), ID: attr(se, "id")})
		p.trigger = &p.t.Triggers[len(p.t.Triggers)-1]
	case p.at("Task", "Principals", "Principal"):
		p.principal = nil
		if len(p.principals) >= maxTaskPrincipals {
			return
		}
		p.principals = append(p.principals, taskPrincipal{id: attr(se, "id")})
		p.principal = &p.principals[len(p.principals)-1]
	}
}

func (p *taskXMLParser) end(v string) {
	if p.depth < 2 || p.stack[0] != "Task" {
		return
	}
	name := p.stack[p.depth-1]
	switch p.stack[1] {
	case "RegistrationInfo":
		if p.depth != 3 {
			return
		}
		switch name {
		case "Author":
			p.t.Author = v
		case "Description":
			p.t.Description = v
		case "URI":
			p.t.URI = v
		case "Date":
			p.t.Date = v
		}
	case "Settings":
		if p.depth != 3 {
			return
		}
		switch name {
		case "Hidden":
			p.t.Hidden = xmlBool(v)
		case "Enabled":
			p.t.Enabled = xmlBool(v)
		}
	case "Principals":
		if p.depth != 4 || p.stack[2] != "Principal" || p.principal == nil {
			return
		}
		switch name {
		case "UserId":
			p.principal.userID = v
		case "GroupId":
			p.principal.groupID = v
		case "LogonType":
			p.principal.logonType = v
		case "RunLevel":
			p.principal.runLevel = v
		}
	case "Actions":
		if p.depth != 4 || p.action == nil {
			return
		}
		a := p.action
		switch name {
		case "Command":
			a.Command = v
		case "Arguments":
			a.Arguments = v
		case "WorkingDirectory":
			a.WorkingDirectory = v
		case "ClassId":
			a.ClassID = v
		case "Data":
			a.Data = v
		case "Server":
			a.Server = v
		case "From":
			a.From = v
		case "To":
			a.To = v
		case "Subject":
			a.Subject = v
		case "Title":
			a.Title = v
		case "Body":
			a.Body = v
		}
	case "Triggers":
		if p.trigger == nil {
			return
		}
		p.endTrigger(name, v)
	}
}

func (p *taskXMLParser) endTrigger(name, v string) {
	tr := p.trigger
	if p.depth == 5 && p.stack[3] == "Repetition" {
		switch name {
		case "Interval":
			tr.RepetitionInterval = v
		case "Duration":
			tr.RepetitionDuration = v
		}
		return
	}
	if p.depth != 4 {
		return
	}
	switch name {
	case "StartBoundary":
		tr.StartBoundary = v
	case "EndBoundary":
		tr.EndBoundary = v
	case "Enabled":
		tr.Enabled = xmlBool(v)
	case "Delay":
		tr.Delay = v
	case "RandomDelay":
		tr.RandomDelay = v
	case "UserId":
		tr.UserID = v
	case "Subscription":
		tr.Subscription = v
	case "StateChange":
		tr.StateChange = v
	case "ScheduleByDay":
		tr.Schedule = "by_day"
	case "ScheduleByWeek":
		tr.Schedule = "by_week"
	case "ScheduleByMonth":
		tr.Schedule = "by_month"
	case "ScheduleByMonthDayOfWeek":
		tr.Schedule = "by_month_day_of_week"
	}
}

// finish copies the principal the actions run as and the first Exec action
// into the task's top-level fields.
func (p *taskXMLParser) finish() {
	t := p.t
	var pr *taskPrincipal
	for i := range p.principals {
		if p.principals[i].id == p.context {
			pr = &p.principals[i]
			break
		}
	}
	if pr == nil && len(p.principals) > 0 {
		pr = &p.principals[0]
	}
	if pr != nil {
		t.RunAs = pr.userID
		if t.RunAs == "" {
			t.RunAs = pr.groupID
		}
		t.LogonType = pr.logonType
		t.RunLevel = pr.runLevel
	}
	for i := range t.Actions {
		if t.Actions[i].Type == "exec" {
			t.Command = t.Actions[i].Command
			t.Arguments = t.Actions[i].Arguments
			t.WorkingDirectory = t.Actions[i].WorkingDirectory
			break
		}
	}
}

func taskActionType(local string) string {
	switch local {
	case "Exec":
		return "exec"
	case "ComHandler":
		return "com_handler"
	case "SendEmail":
		return "send_email"
	case "ShowMessage":
		return "show_message"
	}
	return local
}

func taskTriggerType(local string) string {
	switch local {
	case "BootTrigger":
		return "boot"
	case "RegistrationTrigger":
		return "registration"
	case "IdleTrigger":
		return "idle"
	case "TimeTrigger":
		return "time"
	case "EventTrigger":
		return "event"
	case "LogonTrigger":
		return "logon"
	case "SessionStateChangeTrigger":
		return "session_state_change"
	case "CalendarTrigger":
		return "calendar"
	case "WnfStateChangeTrigger":
		return "wnf_state_change"
	}
	return local
}

// xmlBool reads an xs:boolean; anything else is left unset.
func xmlBool(v string) *bool {
	var b bool
	switch v {
	case "true", "1":
		b = true
	case "false", "0":
	default:
		return nil
	}
	return &b
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// A rune is at most 4 bytes: step back over at most 3 continuation bytes.
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}

// xmlCharOK is the XML 1.0 Char production.
func xmlCharOK(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// sanitizeXMLText replaces invalid UTF-8 and characters XML forbids (NULs,
// control characters: go-msrpc turns lone UTF-16 surrogates into U+FFFD
// already) with U+FFFD, copying only when something must change.
func sanitizeXMLText(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !xmlCharOK(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !xmlCharOK(r) {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
