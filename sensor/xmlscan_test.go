package sensor

import (
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf16"

	tschitss "github.com/oiweiwei/go-msrpc/msrpc/tsch/itaskschedulerservice/v1"

	"github.com/tschsensor/tschsensor/dissect"
)

// hiddenTaskXML puts the definition's salient elements between two pads of
// comment, with a decoy Actions inside the first comment and inside a CDATA
// section: Windows reads neither.
func hiddenTaskXML(pad int) string {
	p := strings.Repeat("A", pad/2)
	return `<?xml version="1.0" encoding="UTF-16"?><Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">` +
		`<RegistrationInfo><Description>` + strings.Repeat("d", 200) + `</Description></RegistrationInfo><!--` + p +
		`<Actions><Exec><Command>decoy.exe</Command></Exec></Actions>` + p + `--><Settings><Enabled>true</Enabled>` +
		`<Hidden>true</Hidden></Settings><Principals><Principal id="LocalSystem"><UserId>S-1-5-18</UserId><RunLevel>HighestAvailable</RunLevel>` +
		`</Principal></Principals><Data><![CDATA[<Actions><Exec><Command>cdata.exe</Command></Exec></Actions>]]></Data>` +
		`<Actions Context="LocalSystem"><Exec><Command>cmd.exe</Command><Arguments>/C whoami &gt; %windir%\Temp\x.tmp 2&gt;&amp;1</Arguments></Exec></Actions>` +
		`<!--` + strings.Repeat(" ", pad) + `--></Task>`
}

// cutStream keeps a stub as the channel does: the head up to max, the
// rest streamed in 4280-byte fragments through the tail window and the
// scan; then joined.
func cutStream(stub []byte, max int, iface dissect.Iface, syn dissect.Syntax, drep [4]byte) ([]byte, *xmlScan) {
	head := stub[:max]
	scan := newRegisterScan(iface, 1, syn, drep, head)
	var tail []byte
	for rest := stub[max:]; len(rest) > 0; {
		n := min(4280, len(rest))
		tail = keepTail(tail, rest[:n], scan)
		rest = rest[n:]
	}
	return compactStub(iface, 1, syn, drep, head, tail, len(stub), scan), scan
}

// TestScanSplice: a SchRpcRegisterTask whose Actions, Principals and
// Settings sit between 2 MB of padding on each side is cut and streamed;
// the scan keeps them and the joined stub decodes with command, arguments,
// run-as and hidden, in NDR and NDR64, both byte orders (go-msrpc stubs).
// The head ends inside the first comment (on and off a character
// boundary), inside Description, and before the root element.
func TestScanSplice(t *testing.T) {
	reg := &tschitss.RegisterTaskRequest{Path: `\Updater`, XML: hiddenTaskXML(2 << 20), Flags: 0x6, LogonType: 5}
	for _, enc := range stubEncodings() {
		stub := enc.marshal(t, reg)
		for _, max := range []int{1 << 20, 1<<20 + 1, 4001, 600, 601, 100} {
			joined, scan := cutStream(stub, max, dissect.IfaceITaskSchedulerService, enc.syn, enc.drep)
			if joined == nil || scan == nil || scan.full {
				t.Fatalf("%s/%d: joined %v, scan %+v", enc.name, max, joined != nil, scan)
			}
			var info dissect.TschInfo
			if err := (dissect.TschOptions{}).DecodeRequest(dissect.IfaceITaskSchedulerService, 1, joined, enc.syn, enc.drep, &info); err != nil {
				t.Fatalf("%s/%d: %v", enc.name, max, err)
			}
			task := info.Task
			if task == nil || task.Path != `\Updater` || task.Command != "cmd.exe" || task.Arguments != `/C whoami > %windir%\Temp\x.tmp 2>&1` ||
				task.RunAs != "S-1-5-18" || task.Hidden == nil || !*task.Hidden || task.RunLevel == "" || len(task.Actions) != 1 ||
				info.Register == nil || info.Register.Flags != 6 {
				t.Errorf("%s/%d: task %+v register %+v", enc.name, max, task, info.Register)
			}
		}
	}
}

// TestScanBound: kept elements stop at xmlKeepMax and the cut is flagged;
// a Description or triggers that pass their own smaller bound are left out
// and the Actions after them are still kept.
func TestScanBound(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<Task><!--` + strings.Repeat("x", 100) + `-->`)
	b.WriteString(`<RegistrationInfo><Description>` + strings.Repeat("D", 40000) + `</Description></RegistrationInfo>`)
	for i := 0; i < 200; i++ {
		b.WriteString(`<Triggers><TimeTrigger><StartBoundary>2026-01-01T00:00:00</StartBoundary></TimeTrigger></Triggers>`)
	}
	b.WriteString(`<Actions><Exec><Command>first.exe</Command></Exec></Actions>`)
	for i := 0; i < 2000; i++ {
		b.WriteString(`<Settings><Hidden>true</Hidden></Settings>`)
	}
	b.WriteString(`</Task>`)
	raw := utf16le(b.String())
	s := newXMLScan(raw[:40], 0, uint64(len(raw)/2), false)
	s.feed(raw[40:])
	var actions, triggers int
	for _, k := range s.kept {
		txt := utf16Text(k.raw)
		switch {
		case strings.Contains(txt, "first.exe"):
			actions++
		case strings.HasPrefix(txt, "<Triggers>"):
			triggers++
		case strings.HasPrefix(txt, "<RegistrationInfo>"):
			t.Errorf("a 40,000-character Description kept")
		}
	}
	if !s.full || s.size > xmlKeepMax || s.lowSize > xmlLowMax || actions != 1 || triggers == 0 || triggers == 200 || len(s.kept) != xmlKeptMax {
		t.Errorf("full %v, size %d, low %d, %d kept: %d actions, %d triggers", s.full, s.size, s.lowSize, len(s.kept), actions, triggers)
	}
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

func utf16Text(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// FuzzXMLScan: any string, cut anywhere, scanned in any pieces, stays
// within its bounds, keeps only whole tags' starts and splices in groups
// of 4 characters (the tolerant parser has its own fuzz targets).
func FuzzXMLScan(f *testing.F) {
	// The first three bytes say where the head ends and how the rest is
	// cut in pieces.
	f.Add(append([]byte{0, 30, 7}, utf16le(hiddenTaskXML(64))...))
	f.Add(append([]byte{0, 9, 3}, utf16le(`<Task><!-- <Actions> --><![CDATA[</Task>]]><?pi ?><!DOCTYPE x [<!ENTITY a "b">]><a:Actions x='1' /></Task>`)...))
	f.Add([]byte("\x00\x01\x01<\x00A\x00c\x00t\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 3 {
			return
		}
		b := in[3:]
		cut, piece := min(int(in[0])<<8|int(in[1]), len(b)), int(in[2])+1
		s := newXMLScan(b[:cut], 0, uint64(len(b)/2), cut%3 == 0)
		if s == nil {
			return
		}
		for rest := b[cut:]; len(rest) > 0; {
			n := min(piece, len(rest))
			s.feed(rest[:n])
			rest = rest[n:]
		}
		if s.size > xmlKeepMax || s.lowSize > xmlLowMax || len(s.kept) > xmlKeptMax || len(s.stack) > xmlDepthMax || len(s.pend) > xmlPendingMax+2 {
			t.Fatalf("bounds: size %d kept %d depth %d pend %d", s.size, len(s.kept), len(s.stack), len(s.pend))
		}
		for _, k := range s.kept {
			if len(k.raw) < 4 || len(k.raw)%2 != 0 || k.raw[0] != '<' && k.raw[1] != '<' || len(k.path) > xmlDepthMax {
				t.Fatalf("kept %q under %q", k.raw, k.path)
			}
		}
		mid := s.splice(func(chars int) int { return (4 - chars%4) % 4 })
		if len(mid)%8 != 0 {
			t.Fatalf("splice of %d bytes, want whole groups of 4 characters", len(mid))
		}
	})
}

// BenchmarkXMLScan: the scan of a 4 MB padded definition's middle, in
// 4280-byte fragments.
func BenchmarkXMLScan(b *testing.B) {
	raw := utf16le(hiddenTaskXML(1 << 20))
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		s := newXMLScan(raw[:1000], 0, uint64(len(raw)/2), false)
		for rest := raw[1000:]; len(rest) > 0; {
			n := min(4280, len(rest))
			s.feed(rest[:n])
			rest = rest[n:]
		}
		if len(s.kept) != 3 {
			b.Fatalf("%d kept", len(s.kept))
		}
	}
}
