package detect

// The rules file: what a SOC tunes without a rebuild. It suppresses alerts
// from known benign sources (counted per entry, so the exceptions stay
// visible), overrides severities, and adds custom alerts whose conditions
// are CEL expressions over the event as printed (cel.go). docs/rules.md
// and docs/rules.example.yaml describe the format.

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"go.yaml.in/yaml/v3"

	"github.com/tschsensor/tschsensor/dissect"
)

// Bounds of a rules file: it is operator input, but a typo must not make
// the sensor allocate without limit.
const (
	maxRulesFileSize = 4 << 20
	maxRulesEntries  = 10000
)

// Ruleset is a loaded rules file. It is immutable once loaded except for
// the suppression counters, which are atomic so that metrics may read them
// from any goroutine.
type Ruleset struct {
	file       string
	severity   map[string]int
	suppressed []*Suppression
	customs    []*customRule
	fileRules  int // customs with onFile
}

// Suppression is one `suppress:` entry.
type Suppression struct {
	// Entry is the entry's position in the file (1-based), Line its line.
	Entry, Line int
	Reason      string
	rules       map[string]bool // nil: every rule
	source      []netip.Prefix
	destination []netip.Prefix
	users       []string // lower case
	taskPath    *regexp.Regexp
	command     *regexp.Regexp
	// key is what the entry matches, canonically written: a reload
	// carries the counter of an entry whose key did not change (Carry).
	key   string
	count *atomic.Uint64
}

// SuppressionCount is what one entry hid.
type SuppressionCount struct {
	Entry  int      `json:"entry"`
	Line   int      `json:"line"`
	Rules  []string `json:"rules,omitempty"`
	Reason string   `json:"reason,omitempty"`
	Count  uint64   `json:"count"`
}

// Suppressions returns the per-entry counts, in file order.
func (rs *Ruleset) Suppressions() []SuppressionCount {
	if rs == nil {
		return nil
	}
	out := make([]SuppressionCount, 0, len(rs.suppressed))
	for _, s := range rs.suppressed {
		sc := SuppressionCount{Entry: s.Entry, Line: s.Line, Reason: s.Reason, Count: s.count.Load()}
		for id := range s.rules {
			sc.Rules = append(sc.Rules, id)
		}
		sort.Strings(sc.Rules)
		out = append(out, sc)
	}
	return out
}

// Overrides returns the number of severity overrides.
func (rs *Ruleset) Overrides() int { return len(rs.severity) }

// CustomRules returns the number of custom rules.
func (rs *Ruleset) CustomRules() int { return len(rs.customs) }

// File returns the path the rules were loaded from.
func (rs *Ruleset) File() string { return rs.file }

// suppress reports whether an entry suppresses the alert, counting it
// against the first entry that does.
func (rs *Ruleset) suppress(a *Event) bool {
	for _, s := range rs.suppressed {
		if s.matches(a) {
			s.count.Add(1)
			return true
		}
	}
	return false
}

func (s *Suppression) matches(a *Event) bool {
	if s.rules != nil && (a.Rule == nil || !s.rules[a.Rule.ID]) {
		return false
	}
	if s.source != nil && (a.Source == nil || !inPrefixes(a.Source.IP, s.source)) {
		return false
	}
	if s.destination != nil && (a.Destination == nil || !inPrefixes(a.Destination.IP, s.destination)) {
		return false
	}
	if s.users != nil && !s.userMatches(a.User) {
		return false
	}
	path, cmd := alertTask(a)
	if s.taskPath != nil && (path == "" || !s.taskPath.MatchString(path)) {
		return false
	}
	if s.command != nil && (cmd == "" || !s.command.MatchString(cmd)) {
		return false
	}
	return true
}

func (s *Suppression) userMatches(u *User) bool {
	if u == nil || u.Name == "" {
		return false
	}
	name := strings.ToLower(u.Name)
	full := strings.ToLower(u.Domain + `\` + u.Name)
	for _, want := range s.users {
		if want == name || want == full {
			return true
		}
	}
	return false
}

// alertTask returns the task path and command line an alert is about: the
// task of its call, or the file a task-file alert names.
func alertTask(a *Event) (path, cmd string) {
	if t, ok := a.Tsch.(*dissect.TschInfo); ok && t != nil && t.Task != nil {
		path = t.Task.Path
		cmd = strings.TrimSpace(t.Task.Command + " " + t.Task.Arguments)
	}
	if path == "" && a.File != nil {
		path = a.File.Path
	}
	return path, cmd
}

func inPrefixes(ip string, ps []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// RulesError is one mistake in a rules file, with where it is.
type RulesError struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *RulesError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// LoadRules reads and compiles a rules file. Every mistake is reported, each
// as a *RulesError (joined with errors.Join).
func LoadRules(path string) (*Ruleset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRulesFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("rules %s: %w", path, err)
	}
	if len(data) > maxRulesFileSize {
		return nil, fmt.Errorf("rules %s: larger than %d bytes", path, maxRulesFileSize)
	}
	return ParseRules(path, data)
}

// rulesParser collects the errors of one file.
type rulesParser struct {
	file string
	errs []error
	ids  map[string]bool // built-in and custom rule ids
}

func (p *rulesParser) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil {
		line, col = n.Line, n.Column
	}
	p.errs = append(p.errs, &RulesError{File: p.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// ParseRules compiles a rules file's contents; name is used in errors.
func ParseRules(name string, data []byte) (*Ruleset, error) {
	p := &rulesParser{file: name, ids: map[string]bool{}}
	for _, d := range builtinDefs {
		p.ids[d.id] = true
	}
	rs := &Ruleset{file: name, severity: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := 1, err.Error()
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return nil, &RulesError{File: name, Line: line, Column: 1, Msg: msg}
	}
	if len(doc.Content) == 0 {
		return rs, nil // an empty file is no rules
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "want a mapping with suppress, severity and rules")
		return nil, errors.Join(p.errs...)
	}
	// Custom rules first: suppress and severity may name their ids.
	sections := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "suppress", "severity", "rules":
			if sections[k.Value] != nil {
				p.errorf(k, "%s given twice", k.Value)
			}
			sections[k.Value] = v
		default:
			p.errorf(k, "unknown key %q (want suppress, severity or rules)", k.Value)
		}
	}
	if v := sections["rules"]; v != nil {
		rs.customs = p.customRules(v)
		for _, c := range rs.customs {
			if c.onFile {
				rs.fileRules++
			}
		}
	}
	if v := sections["severity"]; v != nil {
		p.severities(v, rs.severity)
	}
	if v := sections["suppress"]; v != nil {
		rs.suppressed = p.suppressions(v)
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return rs, nil
}

func (p *rulesParser) seq(n *yaml.Node, what string) []*yaml.Node {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: want a list", what)
		return nil
	}
	if len(n.Content) > maxRulesEntries {
		p.errorf(n, "%s: more than %d entries", what, maxRulesEntries)
		return nil
	}
	return n.Content
}

// strings reads a scalar or a list of scalars.
func (p *rulesParser) strings(n *yaml.Node, what string) []string {
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	for _, e := range p.seq(n, what) {
		if e.Kind != yaml.ScalarNode {
			p.errorf(e, "%s: want a string", what)
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

func (p *rulesParser) scalar(n *yaml.Node, what string) string {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s: want a string", what)
		return ""
	}
	return n.Value
}

func (p *rulesParser) ruleID(n *yaml.Node, id string) bool {
	if !p.ids[id] {
		p.errorf(n, "unknown rule id %q (see `tschsensor rules list`)", id)
		return false
	}
	return true
}

// severityNames are the words a file may use for ECS severities.
var severityNames = map[string]int{"low": SeverityLow, "medium": SeverityMedium, "high": SeverityHigh, "critical": SeverityCritical}

func (p *rulesParser) severityValue(n *yaml.Node) (int, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "severity: want low, medium, high, critical or 1 to 10")
		return 0, false
	}
	if v, ok := severityNames[strings.ToLower(n.Value)]; ok {
		return v, true
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil || v < 1 || v > 10 {
		p.errorf(n, "severity %q: want low, medium, high, critical or 1 to 10", n.Value)
		return 0, false
	}
	return v, true
}

func (p *rulesParser) severities(n *yaml.Node, out map[string]int) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "severity: want a mapping of rule id to severity")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !p.ruleID(k, k.Value) {
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.errorf(k, "severity of %q given twice", k.Value)
		}
		if sev, ok := p.severityValue(v); ok {
			out[k.Value] = sev
		}
	}
}

func (p *rulesParser) suppressions(n *yaml.Node) []*Suppression {
	var out []*Suppression
	for i, e := range p.seq(n, "suppress") {
		if e.Kind != yaml.MappingNode {
			p.errorf(e, "suppress entry: want a mapping")
			continue
		}
		s := &Suppression{Entry: i + 1, Line: e.Line, count: new(atomic.Uint64)}
		for j := 0; j+1 < len(e.Content); j += 2 {
			k, v := e.Content[j], e.Content[j+1]
			switch k.Value {
			case "rule":
				s.rules = map[string]bool{}
				for _, id := range p.strings(v, "rule") {
					if p.ruleID(v, id) {
						s.rules[id] = true
					}
				}
			case "source", "destination":
				var ps []netip.Prefix
				for _, a := range p.strings(v, k.Value) {
					pf, err := parsePrefix(a)
					if err != nil {
						p.errorf(v, "%s %q: %v", k.Value, a, err)
						continue
					}
					ps = append(ps, pf)
				}
				if k.Value == "source" {
					s.source = ps
				} else {
					s.destination = ps
				}
			case "user":
				for _, u := range p.strings(v, "user") {
					s.users = append(s.users, strings.ToLower(u))
				}
			case "task_path", "command":
				re, err := regexp.Compile(p.scalar(v, k.Value))
				if err != nil {
					p.errorf(v, "%s: %v", k.Value, err)
					continue
				}
				if k.Value == "task_path" {
					s.taskPath = re
				} else {
					s.command = re
				}
			case "reason":
				s.Reason = p.scalar(v, "reason")
			default:
				p.errorf(k, "suppress: unknown key %q (want rule, source, destination, user, task_path, command, reason)", k.Value)
			}
		}
		if s.rules == nil && s.source == nil && s.destination == nil && s.users == nil && s.taskPath == nil && s.command == nil {
			// An entry with no condition at all would silence everything:
			// almost certainly a mistake. Read from what was parsed, not
			// from the keys present: "source: []" restricts nothing.
			p.errorf(e, "suppress entry matches every alert: give a rule or a condition")
		}
		s.key = s.matchKey()
		out = append(out, s)
	}
	return out
}

// matchKey writes down what s matches, independent of order, spelling
// and position in the file. The reason is left out: rewording it does not
// change what the entry hides.
func (s *Suppression) matchKey() string {
	var b strings.Builder
	list := func(name string, vals []string) {
		if vals == nil {
			return
		}
		vals = slices.Clone(vals)
		slices.Sort(vals)
		vals = slices.Compact(vals)
		fmt.Fprintf(&b, "%s=%q;", name, vals)
	}
	prefixes := func(name string, ps []netip.Prefix) {
		if ps == nil {
			return
		}
		var vals []string
		for _, p := range ps {
			vals = append(vals, p.Masked().String())
		}
		list(name, vals)
	}
	if s.rules != nil {
		list("rule", slices.Collect(maps.Keys(s.rules)))
	}
	prefixes("source", s.source)
	prefixes("destination", s.destination)
	list("user", s.users)
	if s.taskPath != nil {
		fmt.Fprintf(&b, "task_path=%q;", s.taskPath.String())
	}
	if s.command != nil {
		fmt.Fprintf(&b, "command=%q;", s.command.String())
	}
	return b.String()
}

// Carry makes rs continue the suppression counts of old, the rules in force
// before a reload: an entry of rs that matches exactly what an entry of old
// matched (same rules, addresses, users and expressions, wherever it stands
// in the file and whatever its reason) shares that entry's counter, so
// that a SOC's figures do not restart because another entry was edited.
// Each old counter goes to one entry at most (the first with its key); new
// and changed entries start at zero. Call it before rs is put in force.
func (rs *Ruleset) Carry(old *Ruleset) {
	if rs == nil || old == nil {
		return
	}
	counters := map[string][]*atomic.Uint64{}
	for _, s := range old.suppressed {
		counters[s.key] = append(counters[s.key], s.count)
	}
	for _, s := range rs.suppressed {
		if c := counters[s.key]; len(c) > 0 {
			// The old ruleset may still be counting on a worker that has
			// not yet taken the new one: sharing the counter, not copying
			// its value, keeps those increments.
			s.count, counters[s.key] = c[0], c[1:]
		}
	}
}

// parsePrefix takes a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			return pf, errors.New("not a CIDR")
		}
		return pf.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an address or CIDR")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// RuleInfo describes a rule for `rules list`.
type RuleInfo struct {
	ID, Name  string
	Severity  int
	Technique string
	Tactic    string
	// Source is "built-in" or the rules file defining the rule.
	Source string
}

// ListRules lists the built-in rules, then rs's custom ones, with rs's
// severity overrides applied (rs may be nil).
func ListRules(rs *Ruleset) []RuleInfo {
	var out []RuleInfo
	add := func(d ruleDef, src string) {
		sev := d.severity
		if rs != nil {
			if v, ok := rs.severity[d.id]; ok {
				sev = v
			}
		}
		out = append(out, RuleInfo{ID: d.id, Name: d.name, Severity: sev, Technique: d.technique.ID,
			Tactic: d.tactic.ID, Source: src})
	}
	for _, d := range builtinDefs {
		add(d, "built-in")
	}
	if rs != nil {
		for _, c := range rs.customs {
			add(c.def, rs.file)
		}
	}
	return out
}
