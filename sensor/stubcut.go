package sensor

import (
	"encoding/binary"

	"github.com/tschsensor/tschsensor/dissect"
)

// A request stub larger than --max-stub keeps its head and its last
// stubTail bytes. For the calls whose size an attacker controls through one
// string (the task XML of SchRpcRegisterTask, the command of NetrJobAdd),
// head and tail are joined back into a valid stub whose string lost its
// middle: the fields around the string (path, flags, logon type,
// credentials) decode whatever the string's length, and padding put in the
// middle of the XML cannot push the actions out of sight.

// stubTail is how much of a cut request stub's end is kept.
const stubTail = 64 << 10

// keepTail appends b to a sliding window of the last stubTail bytes; the
// bytes that leave the window go, in order, to the scan when there is one.
func keepTail(t, b []byte, scan *xmlScan) []byte {
	if len(b) >= stubTail {
		if scan != nil {
			scan.feed(t)
			scan.feed(b[:len(b)-stubTail])
		}
		return append(t[:0], b[len(b)-stubTail:]...)
	}
	t = append(t, b...)
	if len(t) > 2*stubTail {
		if scan != nil {
			scan.feed(t[:len(t)-stubTail])
		}
		n := copy(t, t[len(t)-stubTail:])
		t = t[:n]
	}
	return t
}

func stubLayout(syn dissect.Syntax, drep [4]byte) ndrLayout {
	l := ndrLayout{le: binary.LittleEndian, size: 4}
	if drep[0]&0x10 == 0 {
		l.le = binary.BigEndian
	}
	if syn == dissect.SyntaxNDR64 {
		l.size = 8
	}
	return l
}

// registerXML returns the offset of the task XML's string header in a
// SchRpcRegisterTask stub: [unique, string] path, then [string] xml.
func (l ndrLayout) registerXML(head []byte) (int, bool) {
	ref, ok := l.word(head, 0)
	if !ok {
		return 0, false
	}
	p := l.size
	if ref != 0 {
		if p, ok = l.skipString(head, p); !ok {
			return 0, false
		}
	}
	return align(p, l.size), true
}

// newRegisterScan starts the scan of a cut SchRpcRegisterTask's XML from
// the head the stub keeps; nil for other calls or when the head does not
// reach the XML.
func newRegisterScan(iface dissect.Iface, opnum uint16, syn dissect.Syntax, drep [4]byte, head []byte) *xmlScan {
	if iface != dissect.IfaceITaskSchedulerService || opnum != 1 {
		return nil
	}
	l := stubLayout(syn, drep)
	p, ok := l.registerXML(head)
	if !ok {
		return nil
	}
	n, ok := l.word(head, p+2*l.size)
	if !ok {
		return nil
	}
	return newXMLScan(head, p+3*l.size, n, drep[0]&0x10 == 0)
}

// ndrLayout reads conformant varying strings of one transfer syntax.
type ndrLayout struct {
	le interface {
		binary.ByteOrder
		binary.AppendByteOrder
	}
	size int // 4 (NDR) or 8 (NDR64): counts, pointers and their alignment
}

func (l ndrLayout) word(b []byte, p int) (uint64, bool) {
	if p < 0 || p+l.size > len(b) {
		return 0, false
	}
	if l.size == 8 {
		return l.le.Uint64(b[p:]), true
	}
	return uint64(l.le.Uint32(b[p:])), true
}

func (l ndrLayout) putWord(b []byte, v uint64) []byte {
	if l.size == 8 {
		return l.le.AppendUint64(b, v)
	}
	return l.le.AppendUint32(b, uint32(v))
}

func align(p, a int) int { return (p + a - 1) &^ (a - 1) }

// skipString returns the offset past a conformant varying wide string at p.
func (l ndrLayout) skipString(b []byte, p int) (int, bool) {
	p = align(p, l.size)
	n, ok := l.word(b, p+2*l.size)
	if !ok || n > uint64(len(b)) {
		return 0, false
	}
	return p + 3*l.size + 2*int(n), true
}

// compactStub joins a cut request stub's head and tail for the operations
// whose one long string makes it large. total is the stub's whole length.
// It returns nil when the layout does not fit.
//
// scan, when not nil, holds the elements kept from the XML's dropped middle
// of a SchRpcRegisterTask; they are spliced between head and tail.
func compactStub(iface dissect.Iface, opnum uint16, syn dissect.Syntax, drep [4]byte, head, tail []byte, total int, scan *xmlScan) []byte {
	l := stubLayout(syn, drep)
	switch {
	case iface == dissect.IfaceITaskSchedulerService && opnum == 1:
		// SchRpcRegisterTask: [unique, string] path, [string] xml, flags,
		// [unique, string] sddl, logonType, cCreds, [unique] pCreds.
		p, ok := l.registerXML(head)
		if !ok {
			return nil
		}
		return l.joinString(head, tail, total, p, scan)
	case iface == dissect.IfaceATSVC && opnum == 0:
		// NetrJobAdd: [unique, string] server name, AT_INFO {JobTime,
		// DaysOfMonth, DaysOfWeek, Flags, [string] Command}; the command
		// is deferred after the structure and ends the stub.
		ref, ok := l.word(head, 0)
		if !ok {
			return nil
		}
		p := l.size
		if ref != 0 {
			if p, ok = l.skipString(head, p); !ok {
				return nil
			}
		}
		p = align(p, l.size) + l.size + 4 + 1 + 1 // JobTime is a DWORD_PTR
		p = align(p, l.size) + l.size             // the command's pointer
		return l.joinString(head, tail, total, align(p, l.size), nil)
	}
	return nil
}

// joinString rebuilds the stub around the string whose header is at p: the
// string keeps the characters in head and in tail, the bytes after it come
// from tail. The new length keeps what follows on its original alignment.
func (l ndrLayout) joinString(head, tail []byte, total, p int, scan *xmlScan) []byte {
	n, ok := l.word(head, p+2*l.size)
	if !ok {
		return nil
	}
	xs := p + 3*l.size
	xe := xs + 2*int(n)
	tailStart := total - len(tail)
	if n > uint64(total) || xe > total || xs > len(head) || xe < tailStart {
		return nil
	}
	rest := align(xe, 4)
	if rest > total {
		rest = total
	}
	headChars := min((len(head)-xs)/2, int(n))
	from := max(xs+2*headChars, tailStart)
	from += (from - xs) & 1 // on a character boundary
	tailChars := (xe - from) / 2
	var mid []byte
	if scan != nil && scan.headChars == headChars && from-tailStart <= 1 {
		mid = scan.splice(func(chars int) int {
			return (4 - (headChars+chars+tailChars-int(n))%4) % 4
		})
	}
	// Keep the new length congruent to the old one modulo 4 characters so
	// that everything after the string keeps its 8-byte alignment.
	for headChars > 0 && (headChars+len(mid)/2+tailChars-int(n))%4 != 0 {
		headChars--
	}
	if (headChars+len(mid)/2+tailChars-int(n))%4 != 0 {
		return nil
	}
	newN := uint64(headChars + len(mid)/2 + tailChars)
	out := make([]byte, 0, xs+2*int(newN)+(total-xe)+len(mid))
	out = append(out, head[:p]...)
	out = l.putWord(out, newN)
	out = l.putWord(out, 0)
	out = l.putWord(out, newN)
	out = append(out, head[xs:xs+2*headChars]...)
	out = append(out, mid...)
	out = append(out, tail[from-tailStart:xe-tailStart]...)
	out = append(out, tail[xe-tailStart:rest-tailStart]...)
	return append(out, tail[rest-tailStart:]...)
}
