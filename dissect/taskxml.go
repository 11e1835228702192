package dissect

import (
	"errors"
	"fmt"
	"strconv"
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
// definition as the wire carries it: a string already decoded from UTF-16,
// so its encoding declaration is ignored. See ParseTaskXMLBytes for the
// rules; this is the same parser.
func ParseTaskXML(doc string, limit int) (*TaskInfo, error) {
	return parseTaskXML([]byte(doc), limit, false)
}

// ParseTaskXMLBytes reads a task definition from raw bytes, as a file or a
// stream holds them: a BOM, or the pattern of NULs around the first '<',
// decides between UTF-8 and UTF-16 (LE or BE), whatever the declaration
// says; a declaration that disagrees with the bytes makes the document
// malformed, not unreadable. The slice is not kept.
//
// The parser accepts what Windows accepts and more, and says so: invalid or
// unknown entity references and a raw '&' are kept as they are, a '<' that
// starts no markup is a character, the text of leaf elements (Command,
// Arguments, UserId...) runs to their end tag whatever it holds, unquoted
// attribute values, mismatched end tags and a document that ends early
// (truncated) are recovered from. Every such repair sets
// TaskInfo.XMLMalformed and the returned error (ErrMalformed, naming the
// first repair and its offset); the fields are filled all the same. Comments,
// processing instructions, the DOCTYPE and CDATA are read as XML defines
// them, elements are matched by local name whatever their namespace, so
// none of these can hide an action or invent one.
//
// The input is cut at limit bytes (DefaultTaskXMLLimit if limit <= 0),
// reported as ErrLimit; invalid UTF-8 and characters XML forbids become
// U+FFFD (not a malformation: go-msrpc hands lone surrogates over so).
// Depth, element count, actions, triggers and text are bounded.
func ParseTaskXMLBytes(doc []byte, limit int) (*TaskInfo, error) {
	return parseTaskXML(doc, limit, true)
}

func parseTaskXML(doc []byte, limit int, raw bool) (*TaskInfo, error) {
	t := &TaskInfo{}
	if limit <= 0 {
		limit = DefaultTaskXMLLimit
	}
	p := taskXMLParser{t: t}
	text := p.decode(doc, raw)
	cut := false
	if len(text) > limit {
		text = truncateUTF8(text, limit)
		cut = true
	}
	text = sanitizeXMLText(text)
	if strings.IndexByte(text, '\r') >= 0 {
		// End-of-line handling (XML 1.0 2.11), before references are
		// decoded: a &#13; stays.
		text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\r", "\n")
	}
	err := p.run(text, cut)
	p.finish()
	if p.malformed != nil {
		t.XMLMalformed = true
	}
	switch {
	case err != nil && (errors.Is(err, ErrLimit) || !cut):
		return t, err
	case cut:
		return t, errAt("taskxml", limit, ErrLimit, "task xml cut at %d bytes", limit)
	case p.malformed != nil:
		return t, p.malformed
	}
	return t, nil
}

type taskXMLParser struct {
	t          *TaskInfo
	root       string
	stack      [maxTaskXMLDepth]string
	depth      int
	elements   int
	text       strings.Builder
	principals []taskPrincipal
	context    string // Actions Context attribute: the principal id actions run as
	action     *TaskAction
	trigger    *TaskTrigger
	principal  *taskPrincipal
	// malformed is the first repair made, nil for well-formed input.
	malformed error
	attrs     []taskXMLAttr
}

type taskXMLAttr struct{ name, value string }

// repair records that the input needed mending at off.
func (p *taskXMLParser) repair(off int, format string, args ...any) {
	if p.malformed == nil {
		p.malformed = errAt("taskxml", off, ErrMalformed, format, args...)
	}
}

// decode turns the input into UTF-8 text. Raw bytes follow their BOM or
// the NULs around the first '<'; a wire string is UTF-8 already, unless it
// carries UTF-16 code units as characters (every other one NUL).
func (p *taskXMLParser) decode(doc []byte, raw bool) string {
	b := doc
	var utf16BE, isUTF16 bool
	switch {
	case raw && len(b) >= 2 && b[0] == 0xff && b[1] == 0xfe:
		b, isUTF16 = b[2:], true
	case raw && len(b) >= 2 && b[0] == 0xfe && b[1] == 0xff:
		b, isUTF16, utf16BE = b[2:], true, true
	case len(b) >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf:
		b = b[3:]
	}
	if !isUTF16 && len(b) >= 4 {
		switch {
		case b[0] == '<' && b[1] == 0 && b[3] == 0:
			isUTF16 = true
		case b[0] == 0 && b[1] == '<' && b[2] == 0:
			isUTF16, utf16BE = true, true
		}
		if isUTF16 && !raw {
			p.repair(0, "UTF-16 code units in a decoded string")
		}
	}
	if isUTF16 {
		b = utf16ToUTF8(b, utf16BE)
	}
	if raw {
		decl := declaredEncoding(b)
		if d16 := strings.HasPrefix(decl, "utf-16") || decl == "unicode"; decl != "" && d16 != isUTF16 {
			p.repair(0, "encoding declared %q, bytes are %s", decl, map[bool]string{true: "UTF-16", false: "UTF-8"}[isUTF16])
		}
	}
	return strings.TrimPrefix(string(b), "\uFEFF")
}

// utf16ToUTF8 decodes UTF-16 code units; a lone surrogate becomes U+FFFD
// and an odd last byte is dropped.
func utf16ToUTF8(b []byte, be bool) []byte {
	out := make([]byte, 0, len(b)/2+len(b)/8)
	for i := 0; i+1 < len(b); i += 2 {
		u := rune(b[i]) | rune(b[i+1])<<8
		if be {
			u = rune(b[i])<<8 | rune(b[i+1])
		}
		if u >= 0xd800 && u < 0xdc00 && i+3 < len(b) {
			v := rune(b[i+2]) | rune(b[i+3])<<8
			if be {
				v = rune(b[i+2])<<8 | rune(b[i+3])
			}
			if v >= 0xdc00 && v < 0xe000 {
				out = utf8.AppendRune(out, 0x10000+(u-0xd800)<<10+(v-0xdc00))
				i += 2
				continue
			}
		}
		if u >= 0xd800 && u < 0xe000 {
			u = utf8.RuneError
		}
		out = utf8.AppendRune(out, u)
	}
	return out
}

// declaredEncoding returns the lower-case encoding of an XML declaration
// at the start of b, "" without one.
func declaredEncoding(b []byte) string {
	s := string(b[:min(len(b), 200)])
	if !strings.HasPrefix(s, "<?xml") {
		return ""
	}
	end := strings.Index(s, "?>")
	if end < 0 {
		return ""
	}
	s = s[:end]
	i := strings.Index(s, "encoding")
	if i < 0 {
		return ""
	}
	s = strings.TrimLeft(s[i+len("encoding"):], " \t\r\n=")
	if s == "" || s[0] != '"' && s[0] != '\'' {
		return ""
	}
	q := s[0]
	s = s[1:]
	if j := strings.IndexByte(s, q); j >= 0 {
		return strings.ToLower(s[:j])
	}
	return ""
}

// taskXMLLeaves are the elements whose content is text: it runs to the
// element's end tag, so characters that should have been escaped (a raw
// '<', '&' or a stray tag in Arguments) stay in the value instead of
// ending it.
var taskXMLLeaves = map[string]bool{
	"Command": true, "Arguments": true, "WorkingDirectory": true, "ClassId": true, "Data": true, "Server": true,
	"From": true, "To": true, "Subject": true, "Title": true, "Body": true, "UserId": true, "GroupId": true,
	"LogonType": true, "RunLevel": true, "Author": true, "Description": true, "URI": true, "Date": true,
	"Hidden": true, "Enabled": true, "StartBoundary": true, "EndBoundary": true, "Interval": true, "Duration": true,
	"Delay": true, "RandomDelay": true, "Subscription": true, "StateChange": true,
}

func isNameStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || c >= 0x80
}

func isNameChar(c byte) bool {
	return isNameStart(c) || c >= '0' && c <= '9' || c == '-' || c == '.'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func localName(n string) string {
	if i := strings.LastIndexByte(n, ':'); i >= 0 {
		return n[i+1:]
	}
	return n
}

// run walks the document. cut says the input was cut at the limit: ending
// early is then expected, not a malformation.
func (p *taskXMLParser) run(doc string, cut bool) error {
	i := 0
	for i < len(doc) {
		c := doc[i]
		if c != '<' {
			j := strings.IndexByte(doc[i:], '<')
			if j < 0 {
				j = len(doc) - i
			}
			p.appendText(i, doc[i:i+j])
			i += j
			continue
		}
		rest := doc[i:]
		switch {
		case strings.HasPrefix(rest, "<!--"):
			j := strings.Index(rest[4:], "-->")
			if j < 0 {
				return p.ended(i, cut, "comment")
			}
			i += 4 + j + 3
		case strings.HasPrefix(rest, "<![CDATA["):
			j := strings.Index(rest[9:], "]]>")
			if j < 0 {
				p.writeText(rest[9:])
				return p.ended(i, cut, "CDATA section")
			}
			p.writeText(rest[9 : 9+j])
			i += 9 + j + 3
		case strings.HasPrefix(rest, "<?"):
			j := strings.Index(rest, "?>")
			if j < 0 {
				return p.ended(i, cut, "processing instruction")
			}
			i += j + 2
		case strings.HasPrefix(rest, "<!"):
			n := skipDecl(rest)
			if n < 0 {
				return p.ended(i, cut, "declaration")
			}
			i += n
		case strings.HasPrefix(rest, "</"):
			j := strings.IndexByte(rest, '>')
			if j < 0 {
				return p.ended(i, cut, "end tag")
			}
			name := strings.TrimRightFunc(rest[2:j], func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
			if err := p.endElement(i, localName(name)); err != nil {
				return err
			}
			i += j + 1
		case len(rest) > 1 && isNameStart(rest[1]):
			n, name, empty, ok := p.startTag(rest)
			if !ok {
				if n < 0 {
					return p.ended(i, cut, "start tag")
				}
				// Not a tag: a '<' that should have been escaped.
				p.repair(i, "unescaped '<'")
				p.appendText(i, "<")
				i++
				continue
			}
			if err := p.startElement(i, name); err != nil {
				return err
			}
			i += n
			switch {
			case empty:
				if err := p.endElement(i, name); err != nil {
					return err
				}
			case taskXMLLeaves[name]:
				n, closed := p.leafText(doc[i:], i, name)
				i += n
				if !closed {
					return p.ended(i, cut, "element "+name)
				}
				if err := p.endElement(i, name); err != nil {
					return err
				}
			}
		default:
			p.repair(i, "unescaped '<'")
			p.appendText(i, "<")
			i++
		}
	}
	switch {
	case p.depth != 0:
		return p.ended(len(doc), cut, "element "+p.stack[p.depth-1])
	case p.root == "":
		return errAt("taskxml", 0, ErrMalformed, "no root element")
	case p.root != "Task":
		return errAt("taskxml", 0, ErrMalformed, "root element %q is not Task", p.root)
	}
	return nil
}

// ended handles input that stops inside a construct: after the limit cut
// this is expected; otherwise the document is truncated, which is a repair.
// The elements still open are closed so that what they hold is kept.
func (p *taskXMLParser) ended(off int, cut bool, what string) error {
	if !cut {
		p.repair(off, "document ends inside %s (truncated)", what)
	}
	for p.depth > 0 {
		p.end(strings.TrimSpace(p.text.String()))
		p.text.Reset()
		p.depth--
	}
	if p.root != "" && p.root != "Task" {
		return errAt("taskxml", 0, ErrMalformed, "root element %q is not Task", p.root)
	}
	return nil
}

// skipDecl returns the length of a <!...> declaration (DOCTYPE with its
// internal subset), or -1 when the input ends inside it.
func skipDecl(s string) int {
	depth := 0
	var quote byte
	for i := 2; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == '>' && depth <= 0:
			return i + 1
		}
	}
	return -1
}

// startTag reads "<name attr=value ... >" or ".../>" at s. ok false with
// n >= 0 means s does not hold a tag (its '<' is text); n < 0 that the
// input ended inside what is a tag so far.
func (p *taskXMLParser) startTag(s string) (n int, name string, empty, ok bool) {
	i := 1
	for i < len(s) && isNameChar(s[i]) {
		i++
	}
	qname := s[1:i]
	p.attrs = p.attrs[:0]
	for {
		sp := i
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return -1, "", false, false
		}
		switch {
		case s[i] == '>':
			return i + 1, localName(qname), false, true
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '>':
			return i + 2, localName(qname), true, true
		case s[i] == '/' && i+1 >= len(s):
			return -1, "", false, false
		case isNameStart(s[i]) && i > sp:
			a := i
			for i < len(s) && isNameChar(s[i]) {
				i++
			}
			an := s[a:i]
			for i < len(s) && isSpace(s[i]) {
				i++
			}
			if i >= len(s) {
				return -1, "", false, false
			}
			if s[i] != '=' {
				return 0, "", false, false
			}
			i++
			for i < len(s) && isSpace(s[i]) {
				i++
			}
			if i >= len(s) {
				return -1, "", false, false
			}
			var v string
			if q := s[i]; q == '"' || q == '\'' {
				j := strings.IndexByte(s[i+1:], q)
				if j < 0 {
					return -1, "", false, false
				}
				v = s[i+1 : i+1+j]
				if strings.IndexByte(v, '<') >= 0 {
					return 0, "", false, false
				}
				i += j + 2
			} else {
				// Unquoted value: to the next space or end of tag.
				j := i
				for j < len(s) && !isSpace(s[j]) && s[j] != '>' && s[j] != '<' && !(s[j] == '/' && j+1 < len(s) && s[j+1] == '>') {
					j++
				}
				if j == i || j < len(s) && s[j] == '<' {
					return 0, "", false, false
				}
				p.repair(a, "unquoted attribute value")
				v = s[i:j]
				i = j
			}
			p.attrs = append(p.attrs, taskXMLAttr{localName(an), p.unescape(a, v)})
		default:
			return 0, "", false, false
		}
	}
}

// leafText reads a leaf element's content up to its end tag and records it
// as the element's text: entities, CDATA and comments are decoded as XML
// does, anything else is a character. It returns the bytes consumed (the
// end tag included) and whether the end tag was found.
func (p *taskXMLParser) leafText(s string, off int, name string) (int, bool) {
	end, n := findEndTag(s, name)
	closed := end >= 0
	if !closed {
		end, n = len(s), 0
	}
	body := s[:end]
	p.text.Reset()
	for i := 0; i < len(body); {
		rest := body[i:]
		switch {
		case strings.HasPrefix(rest, "<![CDATA["):
			j := strings.Index(rest[9:], "]]>")
			if j < 0 {
				p.writeText(rest[9:])
				i = len(body)
				continue
			}
			p.writeText(rest[9 : 9+j])
			i += 9 + j + 3
		case strings.HasPrefix(rest, "<!--"):
			j := strings.Index(rest[4:], "-->")
			if j < 0 {
				i = len(body)
				continue
			}
			i += 4 + j + 3
		case rest[0] == '<':
			p.repair(off+i, "markup inside %s", name)
			p.writeText("<")
			i++
		default:
			j := strings.IndexByte(rest, '<')
			if j < 0 {
				j = len(rest)
			}
			p.writeText(p.unescape(off+i, rest[:j]))
			i += j
		}
	}
	return end + n, closed
}

// findEndTag finds "</name>" (any prefix, spaces before '>') in s, past
// CDATA sections and comments (which may hold the same characters): its
// offset and length, or -1.
func findEndTag(s, name string) (int, int) {
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			return -1, 0
		}
		i += j
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "<![CDATA["):
			k := strings.Index(rest, "]]>")
			if k < 0 {
				return -1, 0
			}
			i += k + 3
			continue
		case strings.HasPrefix(rest, "<!--"):
			k := strings.Index(rest[4:], "-->")
			if k < 0 {
				return -1, 0
			}
			i += 4 + k + 3
			continue
		case !strings.HasPrefix(rest, "</"):
			i++
			continue
		}
		k := i + 2
		e := k
		for e < len(s) && isNameChar(s[e]) {
			e++
		}
		f := e
		for f < len(s) && isSpace(s[f]) {
			f++
		}
		if localName(s[k:e]) == name && f < len(s) && s[f] == '>' {
			return i, f + 1 - i
		}
		i = k
	}
	return -1, 0
}

// appendText takes character data between tags.
func (p *taskXMLParser) appendText(off int, s string) {
	if strings.IndexByte(s, '&') >= 0 {
		s = p.unescape(off, s)
	}
	p.writeText(s)
}

func (p *taskXMLParser) writeText(s string) {
	if room := maxTaskXMLText - p.text.Len(); room > 0 {
		p.text.WriteString(truncateUTF8(s, room))
	}
}

// unescape decodes entity and character references; one that is invalid
// or unknown stays as written, and is a repair.
func (p *taskXMLParser) unescape(off int, s string) string {
	i := strings.IndexByte(s, '&')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		s = s[i:]
		semi := strings.IndexByte(s[:min(len(s), 12)], ';')
		r, ok := rune(0), false
		if semi > 1 {
			r, ok = xmlEntity(s[1:semi])
		}
		if ok {
			b.WriteRune(r)
			s = s[semi+1:]
		} else {
			p.repair(off, "invalid entity reference or raw '&'")
			b.WriteByte('&')
			s = s[1:]
		}
		i = strings.IndexByte(s, '&')
	}
	b.WriteString(s)
	return b.String()
}

// xmlEntity decodes the name of a predefined entity or a character
// reference (without '&' and ';').
func xmlEntity(n string) (rune, bool) {
	switch n {
	case "lt":
		return '<', true
	case "gt":
		return '>', true
	case "amp":
		return '&', true
	case "quot":
		return '"', true
	case "apos":
		return '\'', true
	}
	if len(n) < 2 || n[0] != '#' {
		return 0, false
	}
	base, digits := 10, n[1:]
	if digits[0] == 'x' {
		base, digits = 16, digits[1:]
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil || digits == "" || !xmlCharOK(rune(v)) {
		return 0, false
	}
	return rune(v), true
}

func (p *taskXMLParser) startElement(off int, name string) error {
	p.elements++
	if p.elements > maxTaskXMLElements {
		return errAt("taskxml", off, ErrLimit, "more than %d elements", maxTaskXMLElements)
	}
	if p.depth == maxTaskXMLDepth {
		return errAt("taskxml", off, errTaskXMLDepth, "")
	}
	if p.depth == 0 {
		if p.root != "" {
			p.repair(off, "second root element %q", name)
		} else {
			p.root = name
		}
	}
	p.stack[p.depth] = name
	p.depth++
	p.text.Reset()
	p.start(name)
	return nil
}

// endElement closes name. An end tag for an element further up closes the
// ones inside it; one matching no open element is ignored. Both are
// repairs.
func (p *taskXMLParser) endElement(off int, name string) error {
	k := p.depth - 1
	for k >= 0 && p.stack[k] != name {
		k--
	}
	if k < 0 {
		p.repair(off, "end tag %q matches no open element", name)
		return nil
	}
	if k != p.depth-1 {
		p.repair(off, "end tag %q closes %q", name, p.stack[p.depth-1])
	}
	for p.depth > k {
		p.end(strings.TrimSpace(p.text.String()))
		p.text.Reset()
		p.depth--
	}
	return nil
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

func (p *taskXMLParser) attr(name string) string {
	for _, a := range p.attrs {
		if a.name == name {
			return a.value
		}
	}
	return ""
}

func (p *taskXMLParser) start(local string) {
	switch {
	case p.at("Task", "Actions"):
		p.context = p.attr("Context")
	case p.under(1, "Task", "Actions"):
		p.action = nil
		if len(p.t.Actions) >= maxTaskActions {
			p.t.ActionsTruncated = true
			return
		}
		p.t.Actions = append(p.t.Actions, TaskAction{Type: taskActionType(local), ID: p.attr("id")})
		p.action = &p.t.Actions[len(p.t.Actions)-1]
	case p.under(1, "Task", "Triggers"):
		p.trigger = nil
		if len(p.t.Triggers) >= maxTaskTriggers {
			p.t.TriggersTruncated = true
			return
		}
		p.t.Triggers = append(p.t.Triggers, TaskTrigger{Type: taskTriggerType(local), ID: p.attr("id")})
		p.trigger = &p.t.Triggers[len(p.t.Triggers)-1]
	case p.at("Task", "Principals", "Principal"):
		p.principal = nil
		if len(p.principals) >= maxTaskPrincipals {
			return
		}
		p.principals = append(p.principals, taskPrincipal{id: p.attr("id")})
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
