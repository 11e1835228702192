package dissect

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
)

// impacketXML is a task definition exactly as a client sent it: the
// tsch.task.xml of the SchRpcRegisterTask event in a project capture's
// golden events, checked against the SHA-256 its facts file took on the
// client side (UTF-16LE with the terminating NUL), with the facts' command
// and arguments.
type impacketXML struct {
	capture, xml, command, arguments string
}

func loadImpacketXML(t *testing.T) []impacketXML {
	t.Helper()
	facts, _ := filepath.Glob("../pcaps/impacket-*.json")
	var out []impacketXML
	for _, fj := range facts {
		var f struct {
			Calls []struct {
				Op, Command, Arguments string
				Sum                    string `json:"xml_sha256_utf16le"`
			}
		}
		b, err := os.ReadFile(fj)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		// The n-th registration of the facts is the n-th of the golden
		// events (the hijack capture registers twice).
		docs := goldenXML(t, strings.TrimSuffix(fj, ".json")+".jsonl")
		n := 0
		for _, c := range f.Calls {
			if c.Op != "SchRpcRegisterTask" {
				continue
			}
			n++
			if c.Sum == "" || n > len(docs) {
				continue
			}
			doc := docs[n-1]
			if doc == "" {
				continue // sealed: the golden events carry no XML
			}
			u := utf16.Encode([]rune(doc + "\x00"))
			raw := make([]byte, 2*len(u))
			for i, v := range u {
				binary.LittleEndian.PutUint16(raw[2*i:], v)
			}
			sum := sha256.Sum256(raw)
			if hex.EncodeToString(sum[:]) != c.Sum {
				t.Fatalf("%s: the golden XML is not what the client sent", fj)
			}
			out = append(out, impacketXML{filepath.Base(fj), doc, c.Command, c.Arguments})
		}
	}
	if len(out) < 3 {
		t.Fatalf("only %d client task definitions found in pcaps/", len(out))
	}
	return out
}

func goldenXML(t *testing.T, path string) []string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var docs []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			Event struct{ Kind, Action string }
			Tsch  struct{ Task struct{ XML string } }
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Event.Kind == "event" && ev.Event.Action == "SchRpcRegisterTask" {
			docs = append(docs, ev.Tsch.Task.XML)
		}
	}
	return docs
}

// TestTaskXMLImpacket: the definitions Impacket's atexec.py (its own
// template, escaped) and our tsch client sent are well-formed and read
// whole; atexec.py -silentcommand puts the command line in unescaped, which
// a strict parser refuses at the first '&' while Windows runs it: the
// tolerant parser reads the same command, arguments, run-as, hidden flag and
// trigger, and says the XML was malformed.
func TestTaskXMLImpacket(t *testing.T) {
	for _, x := range loadImpacketXML(t) {
		got, err := ParseTaskXML(x.xml, 0)
		if err != nil || got.XMLMalformed {
			t.Fatalf("%s: %v (malformed %v)", x.capture, err, got.XMLMalformed)
		}
		if got.Command != x.command || got.Arguments != x.arguments {
			t.Errorf("%s: command %q arguments %q, want %q %q", x.capture, got.Command, got.Arguments, x.command, x.arguments)
		}
		if !strings.Contains(x.capture, "atexec") {
			continue
		}
		// -silentcommand: the operator's line, split at its first space,
		// goes in as it is.
		const line = `cmd.exe /C whoami > %windir%\Temp\x.tmp 2>&1 & echo <done> && type "C:\a b\c.txt"`
		cmd, args, _ := strings.Cut(line, " ")
		i := strings.Index(x.xml, "<Command>")
		j := strings.Index(x.xml, "</Arguments>")
		silent := x.xml[:i] + "<Command>" + cmd + "</Command>\n      <Arguments>" + args + x.xml[j:]
		got, err = ParseTaskXML(silent, 0)
		if !errors.Is(err, ErrMalformed) || !got.XMLMalformed {
			t.Fatalf("%s silent: err %v malformed %v, want ErrMalformed and true", x.capture, err, got.XMLMalformed)
		}
		if got.Command != cmd || got.Arguments != args || got.RunAs != "S-1-5-18" || got.Hidden == nil || !*got.Hidden ||
			len(got.Triggers) != 1 || got.Triggers[0].Type != "calendar" || got.RunLevel != "HighestAvailable" {
			t.Errorf("%s silent: %q %q run_as %q hidden %v triggers %+v", x.capture, got.Command, got.Arguments, got.RunAs,
				got.Hidden, got.Triggers)
		}
	}
}

// TestTaskXMLHostile: what attackers send, what it must read as, and
// whether a strict parser would have refused it.
func TestTaskXMLHostile(t *testing.T) {
	task := func(inner string) string {
		return `<?xml version="1.0" encoding="UTF-16"?>` + "\n" + `<Task version="1.2" xmlns="` + TaskXMLNamespace + `">` +
			`<Principals><Principal id="A"><UserId>S-1-5-18</UserId></Principal></Principals>` +
			`<Settings><Hidden>true</Hidden></Settings>` + inner + `</Task>`
	}
	exec := func(cmd, args string) string {
		return `<Actions Context="A"><Exec><Command>` + cmd + `</Command><Arguments>` + args + `</Arguments></Exec></Actions>`
	}
	for _, c := range []struct {
		name, doc     string
		command, args string
		malformed     bool
	}{
		{"raw ampersand and angle brackets", task(exec("cmd.exe", `/C whoami > %windir%\Temp\x.tmp 2>&1 & echo`)),
			"cmd.exe", `/C whoami > %windir%\Temp\x.tmp 2>&1 & echo`, true},
		{"raw less-than", task(exec("cmd.exe", `/C sort <in.txt >out.txt`)), "cmd.exe", `/C sort <in.txt >out.txt`, true},
		{"tag-like text", task(exec("cmd.exe", `/C echo <b>x</b>`)), "cmd.exe", `/C echo <b>x</b>`, true},
		{"unknown and invalid entities", task(exec("cmd.exe", `a&nbsp;b &#xZZ; &#0; &;&amp &`)), "cmd.exe", `a&nbsp;b &#xZZ; &#0; &;&amp &`,
			true},
		{"valid entities", task(exec("cmd&#46;exe", `&lt;x&gt; &amp;&amp; &quot;q&quot; &apos;&#x41;`)), "cmd.exe", `<x> && "q" 'A`,
			false},
		{"CDATA", task(exec("<![CDATA[cmd.exe]]>", `<![CDATA[/C a & b < c]]>`)), "cmd.exe", `/C a & b < c`, false},
		{"CDATA holding the end tag", task(exec("cmd.exe", `<![CDATA[</Arguments>]]>evil`)), "cmd.exe", `</Arguments>evil`, false},
		{"comment inside the command", task(exec("cm<!-- x -->d.exe", "/c x")), "cmd.exe", "/c x", false},
		{"decoy action in a comment", task(`<!-- <Actions><Exec><Command>decoy.exe</Command></Exec></Actions> -->` + exec("real.exe", "")),
			"real.exe", "", false},
		{"decoy in CDATA between elements", task(`<![CDATA[<Actions><Exec><Command>decoy.exe</Command></Exec></Actions>]]>` + exec("real.exe", "")),
			"real.exe", "", false},
		{"padding", task(strings.Repeat(" ", 1<<20) + `<!--` + strings.Repeat("pad", 1<<16) + `-->` + exec("p.exe", "q")),
			"p.exe", "q", false},
		{"namespace prefixes", `<t:Task xmlns:t="` + TaskXMLNamespace + `"><t:Settings><t:Hidden>true</t:Hidden></t:Settings>` +
			`<t:Principals><t:Principal id="A"><t:UserId>S-1-5-18</t:UserId></t:Principal></t:Principals>` +
			`<t:Actions Context="A"><t:Exec><t:Command>n.exe</t:Command><t:Arguments>a</t:Arguments></t:Exec></t:Actions></t:Task>`,
			"n.exe", "a", false},
		{"another default namespace", strings.Replace(task(exec("o.exe", "")), TaskXMLNamespace, "urn:x", 1), "o.exe", "", false},
		{"DOCTYPE with an entity", `<!DOCTYPE Task [<!ENTITY x "decoy.exe"> <!ELEMENT Task ANY>]>` + task(exec("&x;", "")),
			"&x;", "", true},
		{"byte order mark", "\uFEFF" + task(exec("bom.exe", "")), "bom.exe", "", false},
		{"unquoted attribute", strings.Replace(task(exec("u.exe", "")), `Context="A"`, `Context=A`, 1), "u.exe", "", true},
		{"missing end tags", strings.Replace(task(exec("m.exe", "z")), "</Exec></Actions>", "", 1), "m.exe", "z", true},
		{"end tag of another element", strings.Replace(task(exec("e.exe", "z")), "</Exec>", "</Exek>", 1), "e.exe", "z", true},
		{"truncated in the arguments", task(exec("t.exe", "/c net user x"))[:strings.Index(task(exec("t.exe", "/c net user x")), "user x")+4],
			"t.exe", "/c net user", true},
		{"truncated after the action", strings.TrimSuffix(task(exec("t.exe", "y")), "</Actions></Task>"), "t.exe", "y", true},
		{"actions before principals", `<Task><Actions Context="A"><Exec><Command>b.exe</Command></Exec></Actions>` +
			`<Principals><Principal id="A"><UserId>S-1-5-18</UserId></Principal></Principals><Settings><Hidden>true</Hidden></Settings></Task>`,
			"b.exe", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTaskXML(c.doc, 4<<20)
			if c.malformed != got.XMLMalformed || c.malformed != (err != nil) || err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("err %v malformed %v, want malformed %v", err, got.XMLMalformed, c.malformed)
			}
			if got.Command != c.command || got.Arguments != c.args {
				t.Errorf("command %q arguments %q, want %q %q", got.Command, got.Arguments, c.command, c.args)
			}
			if got.RunAs != "S-1-5-18" || got.Hidden == nil || !*got.Hidden {
				t.Errorf("run_as %q hidden %v", got.RunAs, got.Hidden)
			}
		})
	}
}

// TestTaskXMLEncodings: raw bytes as a file would hold them, in UTF-8 and
// UTF-16 either way round, with and without a BOM, with a declaration that
// agrees or not; and a decoded string that still holds UTF-16 code units.
func TestTaskXMLEncodings(t *testing.T) {
	body := `<Task><Actions><Exec><Command>é.exe</Command><Arguments>/c ü &amp; x</Arguments></Exec></Actions></Task>`
	decl := func(enc string) string { return `<?xml version="1.0" encoding="` + enc + `"?>` }
	// The BOM is U+FEFF in the string's own byte order.
	utf16Bytes := func(order binary.AppendByteOrder, s string, bom bool) []byte {
		var b []byte
		if bom {
			b = order.AppendUint16(b, 0xfeff)
		}
		for _, v := range utf16.Encode([]rune(s)) {
			b = order.AppendUint16(b, v)
		}
		return b
	}
	le := func(s string, bom bool) []byte { return utf16Bytes(binary.LittleEndian, s, bom) }
	be := func(s string, bom bool) []byte { return utf16Bytes(binary.BigEndian, s, bom) }
	for _, c := range []struct {
		name      string
		doc       []byte
		malformed bool
	}{
		{"UTF-8 declared UTF-8", []byte(decl("UTF-8") + body), false},
		{"UTF-8 with BOM, no declaration", append([]byte{0xef, 0xbb, 0xbf}, body...), false},
		{"UTF-16LE with BOM declared UTF-16", le(decl("UTF-16")+body, true), false},
		{"UTF-16BE with BOM declared UTF-16", be(decl("UTF-16")+body, true), false},
		{"UTF-16LE without BOM declared UTF-16", le(decl("UTF-16")+body, false), false},
		{"UTF-16LE declared UTF-8", le(decl("UTF-8")+body, true), true},
		{"UTF-8 declared UTF-16", []byte(decl("UTF-16") + body), true},
		{"UTF-16BE without BOM declared utf-8", be(decl("utf-8")+body, false), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTaskXMLBytes(c.doc, 0)
			if got.XMLMalformed != c.malformed || (err != nil) != c.malformed {
				t.Errorf("err %v malformed %v, want %v", err, got.XMLMalformed, c.malformed)
			}
			if got.Command != "é.exe" || got.Arguments != "/c ü & x" {
				t.Errorf("command %q arguments %q", got.Command, got.Arguments)
			}
		})
	}
	// On the wire the string is decoded already: its declaration says
	// UTF-16 and is right to. UTF-16 code units inside it are not.
	if got, err := ParseTaskXML(decl("UTF-16")+body, 0); err != nil || got.XMLMalformed || got.Command != "é.exe" {
		t.Errorf("wire string: %v %v %q", err, got.XMLMalformed, got.Command)
	}
	if got, err := ParseTaskXML(string(le(body, false)), 0); err == nil || !got.XMLMalformed || got.Command != "é.exe" {
		t.Errorf("UTF-16 in a wire string: %v %v %q", err, got.XMLMalformed, got.Command)
	}
}

// FuzzTaskXMLBytes: any bytes parse without panic, the same way twice,
// within the bounds; an error is ErrMalformed or ErrLimit, and a clean
// parse is never called malformed.
func FuzzTaskXMLBytes(f *testing.F) {
	f.Add([]byte(testTaskXML), 0)
	f.Add([]byte(`<Task><Actions><Exec><Command>cmd.exe</Command><Arguments>/C a > b 2>&1 & c</Arguments></Exec></Actions></Task>`), 0)
	f.Add([]byte("\xff\xfe<\x00T\x00a\x00s\x00k\x00>\x00"), 0)
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><Task><![CDATA[</Task>]]><!-- </Task> --></Task>`), 40)
	f.Fuzz(func(t *testing.T, doc []byte, limit int) {
		if limit > 1<<20 {
			limit = 1 << 20
		}
		a, errA := ParseTaskXMLBytes(doc, limit)
		b, errB := ParseTaskXMLBytes(doc, limit)
		if a == nil || (errA == nil) != (errB == nil) || !reflectEqual(a, b) {
			t.Fatalf("parsing twice differs: %v / %v", errA, errB)
		}
		if errA != nil && !errors.Is(errA, ErrMalformed) && !errors.Is(errA, ErrLimit) {
			t.Fatalf("error %v is neither ErrMalformed nor ErrLimit", errA)
		}
		if errA == nil && a.XMLMalformed {
			t.Fatal("malformed without an error")
		}
		if len(a.Actions) > maxTaskActions || len(a.Triggers) > maxTaskTriggers {
			t.Fatalf("bounds exceeded: %d actions %d triggers", len(a.Actions), len(a.Triggers))
		}
		for _, ac := range a.Actions {
			if len(ac.Command) > maxTaskXMLText || len(ac.Arguments) > maxTaskXMLText {
				t.Fatalf("text beyond %d bytes", maxTaskXMLText)
			}
		}
	})
}

// FuzzTaskXMLArguments puts any command line into atexec.py's definition,
// escaped as atexec.py does, and unescaped as its -silentcommand does,
// with the arguments before the command: escaped, it reads back exactly
// and the XML is well-formed; unescaped, what follows the arguments (the
// command) is never lost unless the line holds markup.
func FuzzTaskXMLArguments(f *testing.F) {
	f.Add(`/C whoami > %windir%\Temp\x.tmp 2>&1 & echo`)
	f.Add(`a&amp;b <c> ]]> <!-- "q" 'a'`)
	f.Add("\r\nx\ry\x00\xff")
	esc := strings.NewReplacer("&", "&amp;", `"`, "&quot;", "'", "&apos;", ">", "&gt;", "<", "&lt;")
	doc := func(args string) string {
		return `<?xml version="1.0" encoding="UTF-16"?>` + "\n" + `<Task version="1.2" xmlns="` + TaskXMLNamespace + `">` +
			`<Settings><Hidden>true</Hidden></Settings><Actions Context="LocalSystem"><Exec><Arguments>` + args +
			`</Arguments><Command>cmd.exe</Command></Exec></Actions></Task>`
	}
	f.Fuzz(func(t *testing.T, arg string) {
		want := strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(sanitizeXMLText(arg), "\r\n", "\n"), "\r", "\n"))
		got, err := ParseTaskXML(doc(esc.Replace(arg)), 0)
		if err != nil || got.XMLMalformed || got.Arguments != want || got.Command != "cmd.exe" {
			t.Fatalf("escaped: err %v malformed %v arguments %q command %q, want %q", err, got.XMLMalformed, got.Arguments, got.Command, want)
		}
		got, _ = ParseTaskXML(doc(arg), 0)
		if strings.IndexByte(arg, '<') < 0 {
			if got.Command != "cmd.exe" || got.Hidden == nil || !*got.Hidden {
				t.Fatalf("unescaped: command %q hidden %v", got.Command, got.Hidden)
			}
			if strings.IndexByte(arg, '&') < 0 && got.Arguments != want {
				t.Fatalf("unescaped: arguments %q, want %q", got.Arguments, want)
			}
		}
	})
}

func reflectEqual(a, b *TaskInfo) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
