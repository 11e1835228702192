package sensor

import (
	"strings"
)

// A cut SchRpcRegisterTask stub keeps its head and its tail; what lies
// between is dropped as it streams. Padding on both sides of <Actions> or
// <Principals> would hide them there, so the dropped characters of the task
// XML go through xmlScan: a lexer that follows comments, CDATA, processing
// instructions, declarations and tags (Windows ignores markup inside
// comments, so a <Command> in a comment must not count), tracks the open
// elements, and keeps the bytes of the elements that say what a task does,
// wherever they sit. joinString splices them between head and tail, closing
// what the head left open and reopening what the tail expects, so that the
// tolerant parser reads them at their place in the document.

const (
	xmlKeepMax    = 64 << 10 // bytes of kept elements per request
	xmlKeptMax    = 256      // kept elements per request
	xmlNameMax    = 64       // characters of an element name read
	xmlDepthMax   = 32       // open elements tracked
	xmlPendingMax = 2 * (xmlNameMax + 2)
	// Descriptive elements (a long Description, many triggers) get at most
	// this much, so that they cannot crowd out Actions and Principals.
	xmlLowMax = 16 << 10
)

var xmlLow = map[string]bool{"RegistrationInfo": true, "Author": true, "Description": true, "URI": true, "Triggers": true}

// xmlSalient are the local names whose elements are kept: the sections and
// the leaves that make up command, arguments, run-as and visibility.
var xmlSalient = map[string]bool{
	"RegistrationInfo": true, "Author": true, "Description": true, "URI": true,
	"Triggers": true, "Settings": true, "Hidden": true, "Enabled": true,
	"Actions": true, "Exec": true, "Command": true, "Arguments": true, "WorkingDirectory": true, "ComHandler": true,
	"Principals": true, "Principal": true, "UserId": true, "LogonType": true, "RunLevel": true, "GroupId": true,
}

type xmlLex uint8

const (
	lexText    xmlLex = iota
	lexLt             // after '<'
	lexBang           // after "<!": "--", "[CDATA[" or a declaration
	lexComment        // inside <!-- -->
	lexCDATA          // inside <![CDATA[ ]]>
	lexPI             // inside <? ?>
	lexDecl           // inside <! >, brackets counted
	lexName           // a start tag's name
	lexAttrs          // a start tag's attributes
	lexQuote          // an attribute value
	lexEndName        // an end tag
)

// xmlKept is one kept element: the elements open (root first) when it
// began, and its bytes as sent.
type xmlKept struct {
	path []string
	raw  []byte
}

type xmlScan struct {
	be        bool
	half      byte
	hasHalf   bool
	left      int // bytes of the string not yet seen
	lex       xmlLex
	last      [2]uint16 // the characters before this one, for "-->", "]]>", "?>"
	match     []byte    // what follows "<!" so far
	quote     uint16
	slash     bool
	bracket   int
	name      []byte
	stack     []string
	over      int    // open elements past xmlDepthMax
	pend      []byte // raw bytes from the '<' of the tag being read
	capturing bool
	capDepth  int
	done      bool
	cur       []byte
	curPath   []string
	kept      []xmlKept
	size      int
	full      bool // the bound left an element out
	low       bool // the element being kept is descriptive (xmlLowMax)
	lowSize   int
	keep      bool // past the head: elements are kept
	headChars int
	headClose []byte
	headRoot  bool // the root element is open where the head ends
}

// newXMLScan starts a scan of the string of n characters starting at stub
// offset xs, of which head holds the first part. It returns nil when the
// whole string is in the head.
func newXMLScan(head []byte, xs int, n uint64, be bool) *xmlScan {
	xe := xs + 2*int(n)
	if n > uint64(1<<40) || xs > len(head) || xe <= len(head) {
		return nil
	}
	s := &xmlScan{be: be, left: 2 * int(n)}
	s.feed(head[xs:])
	s.headChars = (len(head) - xs) / 2
	s.headClose = s.closing()
	s.keep = true
	return s
}

// feed scans the next bytes of the string; bytes past its end are ignored.
func (s *xmlScan) feed(b []byte) {
	if len(b) > s.left {
		b = b[:s.left]
	}
	s.left -= len(b)
	if s.hasHalf && len(b) > 0 {
		s.hasHalf = false
		s.char([]byte{s.half, b[0]})
		b = b[1:]
	}
	for ; len(b) >= 2; b = b[2:] {
		s.char(b[:2])
	}
	if len(b) == 1 {
		s.half, s.hasHalf = b[0], true
	}
}

func (s *xmlScan) char(raw []byte) {
	c := uint16(raw[0]) | uint16(raw[1])<<8
	if s.be {
		c = uint16(raw[1]) | uint16(raw[0])<<8
	}
	lex := s.lex
	s.step(c, raw)
	if s.capturing {
		if s.size+len(s.cur)+len(raw) > xmlKeepMax || s.low && s.lowSize+len(s.cur)+len(raw) > xmlLowMax {
			// This one is left out; smaller ones after it may still fit.
			s.capturing, s.full, s.cur = false, true, nil
		} else {
			s.cur = append(s.cur, raw...)
			if s.done {
				s.commit()
			}
		}
	}
	s.last[0], s.last[1] = s.last[1], c
	if lex != s.lex && s.lex == lexComment {
		// The "--" opening a comment does not start its "-->".
		s.last = [2]uint16{}
	}
}

func xmlNameStart(c uint16) bool {
	return c == '_' || c == ':' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= 0x80
}

func xmlNameChar(c uint16) bool {
	return xmlNameStart(c) || c == '-' || c == '.' || c >= '0' && c <= '9'
}

func xmlSpace(c uint16) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func (s *xmlScan) addPend(raw []byte) {
	if len(s.pend) < xmlPendingMax {
		s.pend = append(s.pend, raw...)
	}
}

func (s *xmlScan) addName(c uint16) {
	if len(s.name) < xmlNameMax {
		if c >= 0x80 {
			c = '?'
		}
		s.name = append(s.name, byte(c))
	}
}

func (s *xmlScan) step(c uint16, raw []byte) {
	switch s.lex {
	case lexText:
		if c == '<' {
			s.lex = lexLt
			s.pend = append(s.pend[:0], raw...)
		}
	case lexLt:
		s.addPend(raw)
		switch {
		case c == '!':
			s.lex, s.match = lexBang, s.match[:0]
		case c == '?':
			s.lex = lexPI
		case c == '/':
			s.lex, s.name = lexEndName, s.name[:0]
		case xmlNameStart(c):
			s.lex, s.name, s.slash = lexName, s.name[:0], false
			s.addName(c)
		case c == '<':
			s.pend = append(s.pend[:0], raw...)
		default:
			s.lex = lexText
		}
	case lexBang:
		b := byte(c)
		if c >= 0x80 {
			b = 0
		}
		s.match = append(s.match, b)
		m := string(s.match)
		switch {
		case m == "--":
			s.lex = lexComment
		case m == "[CDATA[":
			s.lex = lexCDATA
		case strings.HasPrefix("--", m) || strings.HasPrefix("[CDATA[", m):
		default:
			s.lex, s.bracket = lexDecl, 0
			s.declChar(c)
		}
	case lexComment:
		// The characters after "<!--" count: "<!-->" does not end it.
		if c == '>' && s.last == [2]uint16{'-', '-'} {
			s.lex = lexText
		}
	case lexCDATA:
		if c == '>' && s.last == [2]uint16{']', ']'} {
			s.lex = lexText
		}
	case lexPI:
		if c == '>' && s.last[1] == '?' {
			s.lex = lexText
		}
	case lexDecl:
		s.declChar(c)
	case lexName:
		if xmlNameChar(c) {
			s.addPend(raw)
			s.addName(c)
			return
		}
		s.beginTag()
		s.lex = lexAttrs
		s.attrChar(c)
	case lexAttrs:
		s.attrChar(c)
	case lexQuote:
		if c == s.quote {
			s.lex = lexAttrs
		}
	case lexEndName:
		switch {
		case c == '>':
			s.closeElement(string(s.name))
			s.lex = lexText
		case !xmlSpace(c):
			s.addName(c)
		}
	}
}

func (s *xmlScan) declChar(c uint16) {
	switch {
	case c == '[':
		s.bracket++
	case c == ']' && s.bracket > 0:
		s.bracket--
	case c == '>' && s.bracket == 0:
		s.lex = lexText
	}
}

func (s *xmlScan) attrChar(c uint16) {
	switch {
	case c == '"' || c == '\'':
		s.lex, s.quote, s.slash = lexQuote, c, false
	case c == '/':
		s.slash = true
	case c == '>':
		s.lex = lexText
		s.openElement(s.slash)
	case !xmlSpace(c):
		s.slash = false
	}
}

func xmlLocal(n string) string {
	if i := strings.LastIndexByte(n, ':'); i >= 0 {
		return n[i+1:]
	}
	return n
}

// beginTag starts keeping a salient element once its name is read.
func (s *xmlScan) beginTag() {
	if !s.keep || s.capturing || len(s.stack) == 0 || s.over > 0 {
		return
	}
	local := xmlLocal(string(s.name))
	if !xmlSalient[local] {
		return
	}
	if len(s.kept) >= xmlKeptMax {
		s.full = true
		return
	}
	s.low = xmlLow[local]
	s.capturing, s.done = true, false
	s.capDepth = len(s.stack)
	s.cur = append(s.cur[:0], s.pend...)
	s.curPath = append([]string(nil), s.stack...)
}

func (s *xmlScan) openElement(empty bool) {
	if empty {
		if s.capturing && len(s.stack) == s.capDepth {
			s.done = true
		}
		return
	}
	if len(s.stack) >= xmlDepthMax || s.over > 0 {
		s.over++
		return
	}
	s.stack = append(s.stack, string(s.name))
}

// closeElement pops to the innermost open element of that name, as the
// tolerant parser does; an end tag matching none is ignored.
func (s *xmlScan) closeElement(name string) {
	if s.over > 0 {
		s.over--
		return
	}
	k := len(s.stack) - 1
	for k >= 0 && s.stack[k] != name {
		k--
	}
	if k < 0 {
		return
	}
	s.stack = s.stack[:k]
	if s.capturing && len(s.stack) <= s.capDepth {
		s.done = true
	}
}

func (s *xmlScan) commit() {
	s.capturing, s.done = false, false
	for _, p := range s.curPath {
		s.size += len(p)
	}
	s.size += len(s.cur)
	if s.low {
		s.lowSize += len(s.cur)
	}
	s.kept = append(s.kept, xmlKept{path: s.curPath, raw: s.cur})
	s.cur = nil
}

// held is what the scan holds for the stub budget (0 without a scan).
func (s *xmlScan) held() int {
	if s == nil {
		return 0
	}
	return s.size + len(s.cur)
}

// enc writes ASCII text in the string's byte order.
func (s *xmlScan) enc(dst []byte, t string) []byte {
	for i := 0; i < len(t); i++ {
		if s.be {
			dst = append(dst, 0, t[i])
		} else {
			dst = append(dst, t[i], 0)
		}
	}
	return dst
}

// closing ends the construct and the elements (below the root) open where
// the scan stands.
func (s *xmlScan) closing() []byte {
	var out []byte
	open := s.stack
	switch s.lex {
	case lexLt:
		out = s.enc(out, "!---->")
	case lexBang:
		if m := string(s.match); strings.HasPrefix("--", m) {
			out = s.enc(out, "--"[len(m):]+" -->")
		} else if strings.HasPrefix("[CDATA[", m) {
			out = s.enc(out, "[CDATA["[len(m):]+"]]>")
		}
	case lexComment:
		out = s.enc(out, " -->")
	case lexCDATA:
		out = s.enc(out, "]]>")
	case lexPI:
		out = s.enc(out, "?>")
	case lexDecl:
		out = s.enc(out, strings.Repeat("]", s.bracket)+">")
	case lexName, lexAttrs, lexQuote:
		if s.lex == lexQuote {
			out = s.enc(out, string(rune(s.quote&0x7f)))
		}
		out = s.enc(out, ">")
		if !s.slash && s.over == 0 && len(open) < xmlDepthMax {
			open = append(open[:len(open):len(open)], string(s.name))
		}
	case lexEndName:
		out = s.enc(out, ">")
		k := len(open) - 1
		for k >= 0 && open[k] != string(s.name) {
			k--
		}
		if k >= 0 {
			open = open[:k]
		}
	}
	for i := len(open) - 1; i >= 1; i-- {
		out = s.enc(out, "</"+open[i]+">")
	}
	s.headRoot = len(open) > 0
	return out
}

// opening reopens the elements (below the root) and the construct the
// rest of the string continues.
func (s *xmlScan) opening() []byte {
	var out []byte
	for i := 1; i < len(s.stack); i++ {
		out = s.enc(out, "<"+s.stack[i]+">")
	}
	switch s.lex {
	case lexLt:
		out = s.enc(out, "<")
	case lexBang:
		out = s.enc(out, "<!"+string(s.match))
	case lexComment:
		out = s.enc(out, "<!--")
	case lexCDATA:
		out = s.enc(out, "<![CDATA[")
	case lexPI:
		out = s.enc(out, "<?x ")
	case lexDecl:
		out = s.enc(out, "<!X "+strings.Repeat("[", s.bracket))
	case lexName:
		out = s.enc(out, "<"+string(s.name))
	case lexAttrs:
		out = s.enc(out, "<"+string(s.name)+" ")
	case lexQuote:
		out = s.enc(out, "<"+string(s.name)+" a="+string(rune(s.quote&0x7f)))
	case lexEndName:
		out = s.enc(out, "</"+string(s.name))
	}
	return out
}

// splice returns what goes between head and tail: the head's open
// constructs closed, the kept elements inside their paths, pad spaces, and
// what the tail continues reopened. Nil when nothing was kept.
func (s *xmlScan) splice(pad func(chars int) int) []byte {
	if len(s.kept) == 0 {
		return nil
	}
	// Below the root the head left open; inside one of their own when the
	// head ended before it.
	from := 1
	if !s.headRoot {
		from = 0
	}
	out := append([]byte(nil), s.headClose...)
	for _, k := range s.kept {
		path := k.path[min(from, len(k.path)):]
		for _, p := range path {
			out = s.enc(out, "<"+p+">")
		}
		out = append(out, k.raw...)
		for i := len(path) - 1; i >= 0; i-- {
			out = s.enc(out, "</"+path[i]+">")
		}
	}
	open := s.opening()
	out = s.enc(out, strings.Repeat(" ", pad((len(out)+len(open))/2)))
	return append(out, open...)
}
