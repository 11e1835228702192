package sensor

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	tschitss "github.com/oiweiwei/go-msrpc/msrpc/tsch/itaskschedulerservice/v1"
)

// TestMalformedTaskXMLEvent: a SchRpcRegisterTask whose XML carries the
// command line unescaped (atexec.py -silentcommand) through the whole
// sensor: the event has the command and arguments, tsch.task.xml_malformed,
// the registration alert, the anomaly is counted and the line fits the
// schema.
func TestMalformedTaskXMLEvent(t *testing.T) {
	const args = `/C whoami > %windir%\Temp\x.tmp 2>&1 & echo <done>`
	xml := strings.Replace(ocTaskXML, "<Arguments>"+strings.NewReplacer(`"`, "&quot;", "'", "&apos;").Replace(ocTaskArgs)+"</Arguments>",
		"<Arguments>"+args+"</Arguments>", 1)
	if xml == ocTaskXML {
		t.Fatal("template changed")
	}
	c, s := cmpOpen(t, true)
	bind, ack, _, resp := cmpRPC(t)
	stub := ocMarshal(t, false, &tschitss.RegisterTaskRequest{Path: cmpTaskPath, XML: xml, Flags: 2, LogonType: 5})
	fid := s.create("atsvc", 1)
	s.write(fid, bind)
	s.read(fid, ack)
	s.write(fid, bytes.Join(ocRequest(2, 0, 1, stub, 4256), nil))
	s.read(fid, resp)
	s.closeFile(fid)
	s.f.close()
	path := filepath.Join(t.TempDir(), "malformed-xml.pcap")
	c.write(path)
	lines, res := plReplay(t, Options{}, path)
	if res.Stats.Anomalies["tsch_task_xml_malformed"] != 1 {
		t.Errorf("anomalies %v, want tsch_task_xml_malformed 1", res.Stats.Anomalies)
	}
	schema := loadSchema(t)
	var found, alert bool
	for _, l := range lines {
		v, err := decodeLine(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range schema.validate(schema, "$", v) {
			t.Errorf("schema: %s", e)
		}
		var ev struct {
			Event struct{ Kind, Action string }
			Rule  struct{ ID string }
			Tsch  struct {
				Task struct {
					Command, Arguments string
					XMLParseError      string `json:"xml_parse_error"`
					Malformed          bool   `json:"xml_malformed"`
				}
			}
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		alert = alert || ev.Rule.ID == "remote_task_registered"
		if ev.Event.Kind != "event" {
			continue
		}
		found = true
		tk := ev.Tsch.Task
		if tk.Command != "powershell.exe" || tk.Arguments != args || !tk.Malformed || tk.XMLParseError == "" {
			t.Errorf("task %+v", tk)
		}
	}
	if !found || !alert {
		t.Errorf("event %v alert %v in\n%s", found, alert, strings.Join(lines, "\n"))
	}
}
