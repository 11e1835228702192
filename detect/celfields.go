package detect

// Field checking for custom rule conditions. The variables are dynamic maps,
// so CEL itself accepts tsch.task.comand and the rule would never match: a
// misspelt field would silently disable it. The paths a condition selects
// are checked at load against the fields the event can hold, read from the
// Go types that print it.

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"

	"github.com/tschsensor/tschsensor/dissect"
)

// fieldNode is one object of the printed event: its fields by JSON name;
// nil for a value that has no fields (a string, a number, a list).
type fieldNode map[string]fieldNode

// eventSchema returns the fields of an event's top-level objects.
func eventSchema() fieldNode {
	root := fieldNode{}
	t := reflect.TypeOf(Event{})
	for i := 0; i < t.NumField(); i++ {
		name := jsonName(t.Field(i))
		ft := t.Field(i).Type
		if name == "tsch" {
			ft = reflect.TypeOf(dissect.TschInfo{})
		}
		root[name] = schemaOf(ft, 0)
	}
	return root
}

// fileSchema returns the fields of a file operation's event (fileEvent):
// no dcerpc object, and of tsch only the task a .job file defines.
func fileSchema() fieldNode {
	root := eventSchema()
	delete(root, "dcerpc")
	root["tsch"] = fieldNode{"task": root["tsch"]["task"]}
	return root
}

func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	if i := strings.IndexByte(tag, ','); i >= 0 {
		tag = tag[:i]
	}
	if tag == "" {
		return f.Name
	}
	return tag
}

func schemaOf(t reflect.Type, depth int) fieldNode {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || depth > 8 {
		return nil
	}
	n := fieldNode{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("json") == "-" {
			continue
		}
		if f.Anonymous && f.Tag.Get("json") == "" {
			for k, v := range schemaOf(f.Type, depth+1) {
				n[k] = v
			}
			continue
		}
		n[jsonName(f)] = schemaOf(f.Type, depth+1)
	}
	return n
}

// checkFields reports the first selection of a field the event cannot
// hold, with its position in the condition.
func checkFields(a *cel.Ast, schema fieldNode) error {
	native := a.NativeRep()
	var bad error
	celast.PostOrderVisit(native.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if bad != nil || e.Kind() != celast.SelectKind {
			return
		}
		path := selectPath(e)
		if path == nil {
			return // rooted at a comprehension variable or an index
		}
		node, ok := schema[path[0]]
		if !ok {
			if slices.Contains(celTopLevel, path[0]) {
				bad = fieldError(native, e, fmt.Sprintf("a file operation has no %s object (holds %s)", path[0], fieldList(schema)))
			}
			return // not an event object (a comprehension variable)
		}
		for i, f := range path[1:] {
			if node == nil {
				bad = fieldError(native, e, fmt.Sprintf("%s has no fields (selecting %q)", strings.Join(path[:i+1], "."), f))
				return
			}
			next, ok := node[f]
			if !ok {
				bad = fieldError(native, e, fmt.Sprintf("the event has no field %s (%s holds %s)",
					strings.Join(path[:i+2], "."), strings.Join(path[:i+1], "."), fieldList(node)))
				return
			}
			node = next
		}
	}))
	return bad
}

// selectPath spells a chain of selections rooted at an identifier
// ("tsch", "task", "command"), or nil.
func selectPath(e celast.Expr) []string {
	var rev []string
	for e.Kind() == celast.SelectKind {
		s := e.AsSelect()
		rev = append(rev, s.FieldName())
		e = s.Operand()
	}
	if e.Kind() != celast.IdentKind {
		return nil
	}
	rev = append(rev, e.AsIdent())
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev
}

func fieldList(n fieldNode) string {
	names := make([]string, 0, len(n))
	for k := range n {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func fieldError(a *celast.AST, e celast.Expr, msg string) error {
	loc := a.SourceInfo().GetStartLocation(e.ID())
	return &celError{line: loc.Line(), col: loc.Column(), msg: msg}
}
