package detect

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/tschsensor/tschsensor/dissect"
)

// AppendJSON appends the event as encoding/json's Marshal writes it (same
// field order, omitempty, HTML-safe string escaping) and returns the
// extended buffer. Every record goes through it, so it walks the structs
// by hand instead of by reflection and allocates nothing but the buffer's
// growth; only the free-form Tsch and Metric values that it does not know
// fall back to encoding/json. TestAppendJSONMatchesMarshal fills every
// field of every struct at random and compares with json.Marshal, so a
// field added to a struct without its line here fails there.
func (e *Event) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"@timestamp":`...)
	dst = appendJSONString(dst, e.Timestamp)
	dst = append(dst, `,"event":`...)
	dst = e.Event.appendJSON(dst)
	dst = append(dst, `,"observer":{"name":`...)
	dst = appendJSONString(dst, e.Observer.Name)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, e.Observer.Type)
	dst = append(dst, `,"product":`...)
	dst = appendJSONString(dst, e.Observer.Product)
	dst = append(dst, '}')
	dst = appendObject(dst, `,"source":`, e.Source)
	dst = appendObject(dst, `,"destination":`, e.Destination)
	dst = appendObject(dst, `,"network":`, e.Network)
	dst = appendObject(dst, `,"user":`, e.User)
	dst = appendObject(dst, `,"rule":`, e.Rule)
	dst = appendObject(dst, `,"threat":`, e.Threat)
	dst = appendObject(dst, `,"smb":`, e.SMB)
	dst = appendObject(dst, `,"dcerpc":`, e.DCERPC)
	if e.Tsch != nil {
		var err error
		if dst, err = appendTsch(append(dst, `,"tsch":`...), e.Tsch); err != nil {
			return dst, err
		}
	}
	dst = appendObject(dst, `,"file":`, e.File)
	dst = appendObject(dst, `,"atexec":`, e.AtExec)
	dst = appendObject(dst, `,"related":`, e.Related)
	dst = appendObject(dst, `,"pcap":`, e.Pcap)
	if e.Metric != nil {
		var err error
		if dst, err = appendMarshal(append(dst, `,"metric":`...), e.Metric); err != nil {
			return dst, err
		}
	}
	if len(e.Tags) > 0 {
		dst = appendStrings(append(dst, `,"tags":`...), e.Tags)
	}
	return append(dst, '}'), nil
}

// appendObject writes key and v when v is set: the optional objects of an
// event, each of which omits itself when nil.
func appendObject[T any, P interface {
	*T
	appendJSON([]byte) []byte
}](dst []byte, key string, v P) []byte {
	if v == nil {
		return dst
	}
	return v.appendJSON(append(dst, key...))
}

// appendMarshal is the fallback for values the encoder does not know.
func appendMarshal(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("encode %T: %w", v, err)
	}
	return append(dst, b...), nil
}

// appendTsch writes the common MS-TSCH objects that carry no sub-object
// (every call but the few that define or describe a task) by hand, the
// others through encoding/json.
func appendTsch(dst []byte, v any) ([]byte, error) {
	t, ok := v.(*dissect.TschInfo)
	if !ok || t == nil || t.Task != nil || t.Register != nil || t.Job != nil || t.Account != nil || t.Run != nil ||
		t.Security != nil || t.Enum != nil || t.Instance != nil || t.LastRun != nil || t.Runtimes != nil {
		return appendMarshal(dst, v)
	}
	o := objectWriter{dst: dst}
	o.stringOmit("operation", t.Operation)
	o.uint32Ptr("flags", t.Flags)
	o.stringOmit("version", t.Version)
	o.uint32Ptr("missed_runs", t.MissedRuns)
	o.uint32Ptr("return_code", t.ReturnCode)
	o.stringOmit("return_name", t.ReturnName)
	o.stringOmit("decode_error", t.DecodeError)
	return o.end(), nil
}

// objectWriter writes one JSON object's members, minding the commas.
type objectWriter struct {
	dst  []byte
	more bool
}

func (o *objectWriter) key(k string) {
	if o.more {
		o.dst = append(o.dst, ',', '"')
	} else {
		o.dst = append(o.dst, '{', '"')
		o.more = true
	}
	// Keys are the struct tags above: plain ASCII, nothing to escape.
	o.dst = append(o.dst, k...)
	o.dst = append(o.dst, '"', ':')
}

func (o *objectWriter) end() []byte {
	if !o.more {
		return append(o.dst, '{', '}')
	}
	return append(o.dst, '}')
}

func (o *objectWriter) string(k, v string) {
	o.key(k)
	o.dst = appendJSONString(o.dst, v)
}

func (o *objectWriter) stringOmit(k, v string) {
	if v != "" {
		o.string(k, v)
	}
}

func (o *objectWriter) int(k string, v int64) {
	o.key(k)
	o.dst = strconv.AppendInt(o.dst, v, 10)
}

func (o *objectWriter) uint(k string, v uint64) {
	o.key(k)
	o.dst = strconv.AppendUint(o.dst, v, 10)
}

func (o *objectWriter) uint32Ptr(k string, v *uint32) {
	if v != nil {
		o.uint(k, uint64(*v))
	}
}

func (o *objectWriter) bool(k string, v bool) {
	o.key(k)
	o.dst = strconv.AppendBool(o.dst, v)
}

func (o *objectWriter) strings(k string, v []string) {
	if len(v) > 0 {
		o.key(k)
		o.dst = appendStrings(o.dst, v)
	}
}

func appendStrings(dst []byte, v []string) []byte {
	dst = append(dst, '[')
	for i, s := range v {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

func (m *EventMeta) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.string("kind", m.Kind)
	o.string("id", m.ID)
	o.strings("category", m.Category)
	o.strings("type", m.Type)
	o.stringOmit("action", m.Action)
	o.stringOmit("outcome", m.Outcome)
	if m.Severity != 0 {
		o.int("severity", int64(m.Severity))
	}
	o.string("dataset", m.Dataset)
	o.stringOmit("reason", m.Reason)
	o.stringOmit("start", m.Start)
	o.stringOmit("end", m.End)
	return o.end()
}

func (p *Endpoint) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.string("ip", p.IP)
	if p.Port != 0 {
		o.uint("port", uint64(p.Port))
	}
	o.stringOmit("domain", p.Domain)
	o.stringOmit("address", p.Address)
	return o.end()
}

func (n *Network) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.string("transport", n.Transport)
	o.stringOmit("protocol", n.Protocol)
	if n.VLAN != nil {
		o.key("vlan")
		o.dst = strconv.AppendUint(append(o.dst, `{"id":`...), uint64(n.VLAN.ID), 10)
		o.dst = append(o.dst, '}')
	}
	return o.end()
}

func (u *User) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.stringOmit("name", u.Name)
	o.stringOmit("domain", u.Domain)
	o.stringOmit("authentication", u.Authenticator)
	o.stringOmit("source", u.Source)
	o.stringOmit("kerberos_realm", u.Realm)
	o.stringOmit("service_principal", u.SPN)
	o.stringOmit("note", u.Note)
	return o.end()
}

func (r *RuleMeta) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.string("id", r.ID)
	o.string("name", r.Name)
	o.string("description", r.Description)
	o.stringOmit("reference", r.Reference)
	o.string("ruleset", r.Ruleset)
	return o.end()
}

func (t *Threat) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.string("framework", t.Framework)
	o.key("technique")
	tq := objectWriter{dst: o.dst}
	tq.string("id", t.Technique.ID)
	tq.string("name", t.Technique.Name)
	tq.stringOmit("reference", t.Technique.Reference)
	o.dst = tq.end()
	o.key("tactic")
	ta := objectWriter{dst: o.dst}
	ta.string("id", t.Tactic.ID)
	ta.string("name", t.Tactic.Name)
	o.dst = ta.end()
	return o.end()
}

func (s *SMBFields) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.int("version", int64(s.Version))
	o.stringOmit("dialect", s.Dialect)
	o.stringOmit("session_id", s.SessionID)
	o.stringOmit("tree", s.Tree)
	o.stringOmit("pipe", s.Pipe)
	o.stringOmit("file_id", s.FileID)
	if s.Signed {
		o.bool("signed", true)
	}
	return o.end()
}

func (d *DCERPCFields) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.key("interface")
	in := objectWriter{dst: o.dst}
	in.string("name", d.Interface.Name)
	in.stringOmit("uuid", d.Interface.UUID)
	in.stringOmit("version", d.Interface.Version)
	o.dst = in.end()
	o.stringOmit("operation", d.Operation)
	o.uint("opnum", uint64(d.Opnum))
	o.uint("call_id", uint64(d.CallID))
	o.uint("context_id", uint64(d.ContextID))
	o.string("transport", d.Transport)
	o.stringOmit("transfer_syntax", d.TransferSyntax)
	if a := d.Auth; a != nil {
		o.key("auth")
		ao := objectWriter{dst: o.dst}
		ao.string("type", a.Type)
		ao.uint("type_id", uint64(a.TypeID))
		ao.string("level", a.Level)
		ao.uint("level_id", uint64(a.LevelID))
		o.dst = ao.end()
	}
	o.bool("encrypted", d.Encrypted)
	o.bool("decrypted", d.Decrypted)
	o.stringOmit("decrypt_error", d.DecryptError)
	o.key("fragments")
	o.dst = d.Fragments.appendJSON(o.dst)
	o.key("stub_length")
	o.dst = d.StubLength.appendJSON(o.dst)
	if d.Truncated {
		o.bool("truncated", true)
	}
	o.bool("responded", d.Responded)
	o.stringOmit("fault", d.Fault)
	o.uint32Ptr("fault_code", d.FaultCode)
	o.stringOmit("decode_error", d.DecodeError)
	if f := d.Flood; f != nil {
		o.key("flood")
		fo := objectWriter{dst: o.dst}
		fo.int("calls", int64(f.Calls))
		fo.uint("last_call_id", uint64(f.LastCallID))
		fo.key("opnums")
		if f.Opnums == nil {
			fo.dst = append(fo.dst, "null"...)
		} else {
			fo.dst = append(fo.dst, '[')
			for i, n := range f.Opnums {
				if i > 0 {
					fo.dst = append(fo.dst, ',')
				}
				fo.dst = strconv.AppendUint(fo.dst, uint64(n), 10)
			}
			fo.dst = append(fo.dst, ']')
		}
		o.dst = fo.end()
	}
	return o.end()
}

func (p Pair) appendJSON(dst []byte) []byte {
	dst = strconv.AppendInt(append(dst, `{"request":`...), int64(p.Request), 10)
	dst = strconv.AppendInt(append(dst, `,"response":`...), int64(p.Response), 10)
	return append(dst, '}')
}

func (f *FileFields) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.string("path", f.Path)
	o.stringOmit("name", f.Name)
	o.stringOmit("directory", f.Directory)
	o.stringOmit("share", f.Share)
	if f.BytesRead != 0 {
		o.uint("bytes_read", f.BytesRead)
	}
	if f.Deleted {
		o.bool("deleted", true)
	}
	return o.end()
}

func (a *AtExecFields) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.bool("output_read", a.OutputRead)
	o.stringOmit("output_file", a.OutputFile)
	o.bool("task_deleted", a.TaskDeleted)
	o.bool("polled", a.Polled)
	o.bool("sealed", a.Sealed)
	return o.end()
}

func (r *Related) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.strings("events", r.Events)
	o.strings("ip", r.IP)
	o.strings("user", r.User)
	return o.end()
}

func (p *Pcap) appendJSON(dst []byte) []byte {
	o := objectWriter{dst: dst}
	o.string("file", p.File)
	if len(p.Frames) > 0 {
		o.key("frames")
		o.dst = append(o.dst, '[')
		for i, f := range p.Frames {
			if i > 0 {
				o.dst = append(o.dst, ',')
			}
			o.dst = strconv.AppendUint(o.dst, f, 10)
		}
		o.dst = append(o.dst, ']')
	}
	return o.end()
}

// hexDigits are the lower-case digits of \u escapes, as encoding/json
// writes them.
const hexDigits = "0123456789abcdef"

// jsonSafe has a '1' at each byte appendJSONString copies as is: ASCII
// that is not a control byte, quote, backslash, <, > or &. Bytes from 0x80
// (UTF-8) are '0': they go through the rune check. 256 entries, so that
// indexing by a byte needs no bounds check.
const jsonSafe = "0000000000000000000000000000000011011101111111111111111111110101" +
	"1111111111111111111111111111011111111111111111111111111111111111" +
	"0000000000000000000000000000000000000000000000000000000000000000" +
	"0000000000000000000000000000000000000000000000000000000000000000"

// appendJSONString quotes s the way encoding/json does with HTML escaping
// on (its default, and what Marshal does): `"` and `\` backslashed; \b, \f,
// \n, \r, \t by name; other control bytes and <, >, & as \u00XX; each
// byte of invalid UTF-8 as \ufffd; U+2028 and U+2029 as \u2028 and \u2029
// (JSONP-safe); everything else as is.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		for i+4 <= len(s) && jsonSafe[s[i]] == '1' && jsonSafe[s[i+1]] == '1' && jsonSafe[s[i+2]] == '1' && jsonSafe[s[i+3]] == '1' {
			i += 4
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if jsonSafe[c] == '1' {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += n
			continue
		}
		i += n
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
