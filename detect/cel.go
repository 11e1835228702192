package detect

// Custom rules: CEL conditions over the event as it is printed. The event
// is marshalled to JSON and back into maps, so a condition names fields
// exactly as the JSON line does (dcerpc.operation, tsch.task.command,
// source.ip); a top-level object the event lacks is an empty map, so
// has(tsch.task) is false rather than an error. An evaluation error (a
// missing field) is no match.

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"go.yaml.in/yaml/v3"
)

// celTopLevel are the event's top-level objects a condition may name.
var celTopLevel = []string{"event", "observer", "source", "destination", "network", "user", "smb", "dcerpc",
	"tsch", "file", "pcap"}

// celCostLimit bounds one evaluation: conditions are operator input, but a
// comprehension over a long list must not stall the detector.
const celCostLimit = 100000

type customRule struct {
	def  ruleDef
	line int
	prg  cel.Program
	// onFile: the rule looks at SMB file operations (`on: file`), not at
	// calls.
	onFile bool
}

func newCELEnv() (*cel.Env, error) {
	opts := []cel.EnvOption{ext.Strings()}
	for _, v := range celTopLevel {
		opts = append(opts, cel.Variable(v, cel.MapType(cel.StringType, cel.DynType)))
	}
	str := cel.StringType
	listStr := cel.ListType(cel.StringType)
	opts = append(opts,
		cel.Function("in_cidr",
			cel.Overload("in_cidr_string_string", []*cel.Type{str, str}, cel.BoolType, cel.BinaryBinding(inCIDR)),
			cel.Overload("in_cidr_string_list", []*cel.Type{str, listStr}, cel.BoolType, cel.BinaryBinding(inCIDR)),
			cel.MemberOverload("string_in_cidr_string", []*cel.Type{str, str}, cel.BoolType, cel.BinaryBinding(inCIDR)),
			cel.MemberOverload("string_in_cidr_list", []*cel.Type{str, listStr}, cel.BoolType, cel.BinaryBinding(inCIDR))),
		cel.Function("iequals",
			cel.Overload("iequals_string_string", []*cel.Type{str, str}, cel.BoolType, cel.BinaryBinding(strFunc(strings.EqualFold))),
			cel.MemberOverload("string_iequals_string", []*cel.Type{str, str}, cel.BoolType, cel.BinaryBinding(strFunc(strings.EqualFold)))),
		cel.Function("icontains",
			cel.Overload("icontains_string_string", []*cel.Type{str, str}, cel.BoolType, cel.BinaryBinding(strFunc(containsFold))),
			cel.MemberOverload("string_icontains_string", []*cel.Type{str, str}, cel.BoolType, cel.BinaryBinding(strFunc(containsFold)))),
	)
	return cel.NewEnv(opts...)
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func strFunc(f func(a, b string) bool) func(lhs, rhs ref.Val) ref.Val {
	return func(lhs, rhs ref.Val) ref.Val {
		a, ok1 := lhs.(types.String)
		b, ok2 := rhs.(types.String)
		if !ok1 || !ok2 {
			return types.NewErr("want strings")
		}
		return types.Bool(f(string(a), string(b)))
	}
}

// inCIDR reports whether an address lies in a CIDR (or is the address), or
// in any of a list of them.
func inCIDR(lhs, rhs ref.Val) ref.Val {
	ip, ok := lhs.(types.String)
	if !ok {
		return types.NewErr("in_cidr: want an address string")
	}
	var nets []string
	switch r := rhs.(type) {
	case types.String:
		nets = []string{string(r)}
	default:
		v, err := rhs.ConvertToNative(reflect.TypeOf([]string{}))
		if err != nil {
			return types.NewErr("in_cidr: want a CIDR or a list of them")
		}
		nets = v.([]string)
	}
	var ps []netip.Prefix
	for _, n := range nets {
		p, err := parsePrefix(n)
		if err != nil {
			return types.NewErr("in_cidr %q: %v", n, err)
		}
		ps = append(ps, p)
	}
	return types.Bool(inPrefixes(string(ip), ps))
}

var customIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

func (p *rulesParser) customRules(n *yaml.Node) []*customRule {
	entries := p.seq(n, "rules")
	if len(entries) == 0 {
		return nil
	}
	env, err := newCELEnv()
	if err != nil {
		p.errorf(n, "CEL environment: %v", err)
		return nil
	}
	schemas := map[bool]fieldNode{false: eventSchema(), true: fileSchema()}
	var out []*customRule
	for _, e := range entries {
		if e.Kind != yaml.MappingNode {
			p.errorf(e, "rule: want a mapping")
			continue
		}
		r := &customRule{line: e.Line, def: ruleDef{severity: SeverityMedium, technique: techScheduledTask,
			tactic: tacticExecution, ruleset: "custom"}}
		var cond *yaml.Node
		var idNode *yaml.Node
		for j := 0; j+1 < len(e.Content); j += 2 {
			k, v := e.Content[j], e.Content[j+1]
			switch k.Value {
			case "id":
				r.def.id, idNode = p.scalar(v, "id"), v
			case "name":
				r.def.name = p.scalar(v, "name")
			case "description":
				r.def.description = p.scalar(v, "description")
			case "severity":
				if sev, ok := p.severityValue(v); ok {
					r.def.severity = sev
				}
			case "mitre":
				p.mitre(v, &r.def)
			case "tags":
				r.def.tags = p.strings(v, "tags")
			case "condition":
				cond = v
			case "on":
				switch on := p.scalar(v, "on"); on {
				case "call":
				case "file":
					r.onFile = true
				default:
					p.errorf(v, "rule on %q: want call (DCE-RPC calls, the default) or file (SMB file operations)", on)
				}
			default:
				p.errorf(k, "rule: unknown key %q (want id, name, description, severity, mitre, tags, on, condition)", k.Value)
			}
		}
		switch {
		case idNode == nil:
			p.errorf(e, "rule: no id")
			continue
		case !customIDPattern.MatchString(r.def.id):
			p.errorf(idNode, "rule id %q: want lower-case letters, digits, '_', '.', '-'", r.def.id)
			continue
		case p.ids[r.def.id]:
			p.errorf(idNode, "rule id %q is already taken", r.def.id)
			continue
		}
		p.ids[r.def.id] = true
		if r.def.name == "" {
			r.def.name = r.def.id
		}
		if cond == nil {
			p.errorf(e, "rule %s: no condition", r.def.id)
			continue
		}
		prg, err := compileCondition(env, schemas[r.onFile], p.scalar(cond, "condition"))
		if err != nil {
			p.errorf(conditionPos(cond, err), "rule %s: condition: %v", r.def.id, err)
			continue
		}
		r.prg = prg
		out = append(out, r)
	}
	return out
}

var techniqueID = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)
var tacticID = regexp.MustCompile(`^TA\d{4}$`)

func (p *rulesParser) mitre(n *yaml.Node, def *ruleDef) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "mitre: want a mapping with technique and tactic")
		return
	}
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		val := p.scalar(v, k.Value)
		switch k.Value {
		case "technique":
			if !techniqueID.MatchString(val) {
				p.errorf(v, "mitre technique %q: want T1234 or T1234.567", val)
				continue
			}
			def.technique = ThreatTechnique{ID: val, Reference: "https://attack.mitre.org/techniques/" + strings.ReplaceAll(val, ".", "/") + "/"}
		case "technique_name":
			def.technique.Name = val
		case "tactic":
			if !tacticID.MatchString(val) {
				p.errorf(v, "mitre tactic %q: want TA1234", val)
				continue
			}
			def.tactic = ThreatTactic{ID: val}
		case "tactic_name":
			def.tactic.Name = val
		default:
			p.errorf(k, "mitre: unknown key %q (want technique, technique_name, tactic, tactic_name)", k.Value)
		}
	}
	// Names of the techniques and tactics the built-in rules use are
	// filled in; others are the file's to give.
	for _, t := range []ThreatTechnique{techScheduledTask, techAt} {
		if def.technique.ID == t.ID && def.technique.Name == "" {
			def.technique.Name = t.Name
		}
	}
	for _, t := range []ThreatTactic{tacticExecution, tacticPersistence, tacticLateral, tacticDiscovery, tacticDefEvasion} {
		if def.tactic.ID == t.ID && def.tactic.Name == "" {
			def.tactic.Name = t.Name
		}
	}
}

// celError is a compile error at a position within the condition.
type celError struct {
	line, col int // 1-based line, 0-based column
	msg       string
}

func (e *celError) Error() string { return e.msg }

func compileCondition(env *cel.Env, schema fieldNode, expr string) (cel.Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("empty")
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		if errs := iss.Errors(); len(errs) > 0 {
			e := errs[0]
			return nil, &celError{line: e.Location.Line(), col: e.Location.Column(), msg: e.Message}
		}
		return nil, iss.Err()
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("yields %s, want a bool", t)
	}
	if err := checkFields(ast, schema); err != nil {
		return nil, err
	}
	return env.Program(ast, cel.CostLimit(celCostLimit))
}

// custom runs the custom rules on a call's event.
func (rs *Ruleset) custom(a *Alerts, c *Call, ev *Event) {
	if len(rs.customs) == 0 {
		return
	}
	vars, err := celVars(ev)
	if err != nil {
		return
	}
	for _, r := range rs.customs {
		if r.onFile {
			continue
		}
		out, _, err := r.prg.Eval(vars)
		if err != nil || out != types.True {
			continue
		}
		al := alertFrom(r.def, c, ev, []string{ev.Event.ID}, nil)
		al.Event.Reason = "custom rule " + r.def.id + " (" + rs.file + ":" + strconv.Itoa(r.line) + ")"
		a.publish(al)
	}
}

// celVars turns an event into the condition's variables.
func celVars(ev *Event) (map[string]any, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("event to CEL: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("event to CEL: %w", err)
	}
	vars := make(map[string]any, len(celTopLevel))
	for _, k := range celTopLevel {
		v, ok := m[k].(map[string]any)
		if !ok {
			v = map[string]any{}
		}
		vars[k] = v
	}
	return vars, nil
}

// conditionPos points at the mistake inside a condition when the YAML
// scalar maps onto the file line by line (plain or quoted on one line);
// otherwise at the condition itself.
func conditionPos(n *yaml.Node, err error) *yaml.Node {
	ce, ok := err.(*celError)
	if !ok || ce.line != 1 || strings.Contains(n.Value, "\n") {
		return n
	}
	col := n.Column + ce.col
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		col++
	}
	return &yaml.Node{Line: n.Line, Column: col}
}
