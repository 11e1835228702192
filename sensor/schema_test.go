package sensor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tschsensor/tschsensor/detect"
	"github.com/tschsensor/tschsensor/sensor/output"
)

// The schema is checked with the small validator below rather than a
// library: docs/event.schema.json uses a handful of keywords, and a
// dependency for them would cost more than these lines.

// jsonSchema is the subset of JSON Schema (draft 2020-12) the event schema
// uses. Unknown keywords make the test fail, so the schema cannot silently
// grow past what is checked.
type jsonSchema struct {
	Schema      string                 `json:"$schema"`
	ID          string                 `json:"$id"`
	Title       string                 `json:"title"`
	Description string                 `json:"description"`
	Ref         string                 `json:"$ref"`
	Defs        map[string]*jsonSchema `json:"$defs"`
	Type        string                 `json:"type"`
	Properties  map[string]*jsonSchema `json:"properties"`
	Required    []string               `json:"required"`
	// AdditionalProperties: nil allows any, false forbids; a schema is
	// not used here.
	AdditionalProperties *bool       `json:"additionalProperties"`
	Enum                 []any       `json:"enum"`
	Items                *jsonSchema `json:"items"`
	Pattern              string      `json:"pattern"`
	Minimum              *float64    `json:"minimum"`
	Maximum              *float64    `json:"maximum"`
	re                   *regexp.Regexp
}

func loadSchema(t testing.TB) *jsonSchema {
	t.Helper()
	b, err := os.ReadFile("../docs/event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s jsonSchema
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("docs/event.schema.json uses a keyword the validator does not know: %v", err)
	}
	if s.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Fatalf("$schema %q", s.Schema)
	}
	var compile func(*jsonSchema)
	compile = func(n *jsonSchema) {
		if n == nil {
			return
		}
		if n.Pattern != "" {
			n.re = regexp.MustCompile(n.Pattern)
		}
		for _, c := range n.Properties {
			compile(c)
		}
		for _, c := range n.Defs {
			compile(c)
		}
		compile(n.Items)
	}
	compile(&s)
	return &s
}

// validate returns every violation of v against s at path.
func (s *jsonSchema) validate(root *jsonSchema, path string, v any) []string {
	if s.Ref != "" {
		name, ok := strings.CutPrefix(s.Ref, "#/$defs/")
		def := root.Defs[name]
		if !ok || def == nil {
			return []string{fmt.Sprintf("%s: unresolvable $ref %q", path, s.Ref)}
		}
		return def.validate(root, path, v)
	}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("%T, want object", v)
			return errs
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				bad("missing required %q", r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := s.Properties[k]
			if p == nil {
				if s.AdditionalProperties != nil && !*s.AdditionalProperties {
					bad("property %q not in the schema", k)
				}
				continue
			}
			errs = append(errs, p.validate(root, path+"."+k, m[k])...)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("%T, want array", v)
			return errs
		}
		if s.Items != nil {
			for i, e := range a {
				errs = append(errs, s.Items.validate(root, fmt.Sprintf("%s[%d]", path, i), e)...)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("%T, want string", v)
			return errs
		}
		if s.re != nil && !s.re.MatchString(str) {
			bad("%q does not match %s", str, s.Pattern)
		}
	case "integer", "number":
		n, ok := v.(json.Number)
		if !ok {
			bad("%T, want %s", v, s.Type)
			return errs
		}
		f, err := n.Float64()
		if err != nil || s.Type == "integer" && strings.ContainsAny(n.String(), ".eE") {
			bad("%s is not an %s", n, s.Type)
			return errs
		}
		if s.Minimum != nil && f < *s.Minimum || s.Maximum != nil && f > *s.Maximum {
			bad("%s outside [%v, %v]", n, deref(s.Minimum), deref(s.Maximum))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("%T, want boolean", v)
		}
	case "":
	default:
		bad("schema type %q not supported by the validator", s.Type)
	}
	if len(s.Enum) > 0 && !slices.ContainsFunc(s.Enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		bad("%v not one of %v", v, s.Enum)
	}
	return errs
}

func deref(f *float64) any {
	if f == nil {
		return "-"
	}
	return *f
}

func decodeLine(line string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value on the line")
	}
	return v, nil
}

// TestSchemaValidator makes sure the validator refuses what it must.
func TestSchemaValidator(t *testing.T) {
	s := loadSchema(t)
	good := `{"@timestamp":"2023-09-13T15:33:51.216890000Z","event":{"kind":"event","id":"7f81b12cb0b40844989457bed8dfd271","dataset":"tschsensor.call"},"observer":{"name":"x","type":"sensor","product":"tschsensor"}}`
	v, _ := decodeLine(good)
	if errs := s.validate(s, "$", v); len(errs) > 0 {
		t.Fatalf("minimal event refused: %v", errs)
	}
	for _, bad := range []string{
		strings.Replace(good, `"kind":"event"`, `"kind":"evnt"`, 1),                                 // enum
		strings.Replace(good, `"id":"7f81`, `"id":"Xf81`, 1),                                        // pattern
		strings.Replace(good, `,"dataset":"tschsensor.call"`, ``, 1),                                // required
		strings.Replace(good, `"observer"`, `"observr"`, 1),                                         // additionalProperties
		strings.Replace(good, `}}`, `},"dcerpc":{"opnum":-1}}`, 1),                                  // minimum
		strings.Replace(good, `}}`, `},"pcap":{"file":"f","frames":[1,"2"]}}`, 1),                   // items
		strings.Replace(good, `}}`, `},"smb":{"version":2.5}}`, 1),                                  // integer
		strings.Replace(good, `}}`, `},"tsch":{"task":{"hidden":"yes"}}}`, 1),                       // $ref + boolean
		strings.Replace(good, `"@timestamp":"2023-09-13T15:33:51.216890000Z"`, `"@timestamp":1`, 1), // type
	} {
		v, err := decodeLine(bad)
		if err != nil {
			t.Fatalf("bad test line %s: %v", bad, err)
		}
		if errs := s.validate(s, "$", v); len(errs) == 0 {
			t.Errorf("accepted %s", bad)
		}
	}
}

// TestEventSchema validates every line the sensor prints for every capture
// (shared corpus and pcaps/), plus a metric line and the alerts only
// synthetic input raises, against docs/event.schema.json.
func TestEventSchema(t *testing.T) {
	s := loadSchema(t)
	check := func(t *testing.T, lines []string) {
		t.Helper()
		for i, l := range lines {
			v, err := decodeLine(l)
			if err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			for _, e := range s.validate(s, "$", v) {
				t.Errorf("line %d: %s", i+1, e)
			}
		}
	}
	kinds := map[string]int{}
	for _, f := range plCaptures(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			lines, _ := plReplay(t, Options{}, f)
			check(t, lines)
			for _, l := range lines {
				var m struct {
					Event struct{ Kind string } `json:"event"`
				}
				json.Unmarshal([]byte(l), &m)
				kinds[m.Event.Kind]++
			}
		})
	}
	if kinds["event"] == 0 || kinds["alert"] == 0 {
		t.Errorf("the captures gave %v: no events or no alerts were checked", kinds)
	}
	t.Run("synthetic", func(t *testing.T) {
		// A metric line and a task_file_written_smb alert do not come out of
		// the replays; render them the way the sensor does.
		var buf bytes.Buffer
		out := output.NewOutput(output.NewWriterSink(&buf, false))
		out.Emit(&detect.Event{Timestamp: "2024-01-02T03:04:05.000000000Z",
			Event:    detect.EventMeta{Kind: "metric", ID: "stats-test-1704164645000000000", Dataset: "tschsensor.stats"},
			Observer: detect.Observer{Name: "test", Type: "sensor", Product: "tschsensor"},
			Metric:   LiveMetric{Interfaces: []string{"eth1"}, Healthy: true, Workers: []WorkerMetric{{Worker: 0}}}})
		d := detect.New(detect.Options{Observer: "test"}, out.Emit)
		d.File(&detect.FileOp{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Op: "write", Path: `Tasks\evil.job`, Share: "ADMIN$",
			SMB:      detect.SMBContext{Version: 2, Dialect: "3.1.1", SessionID: 1, Tree: `\\srv\ADMIN$`, FileID: strings.Repeat("ab", 16)},
			PcapFile: "x.pcap", Frames: []uint64{7}})
		d.Flush()
		if err := out.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d synthetic lines", len(lines))
		}
		check(t, lines)
	})
}
