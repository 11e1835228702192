package sensor

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestAnomaliesDocumented: every anomaly name the module counts — in any
// package, sensor's subpackages, dissect, detect and cmd included — is
// listed in docs/anomalies.md, so operators can look up what a counter means.
func TestAnomaliesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/anomalies.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := moduleAnomalies(t, "..")
	if len(seen) < 60 {
		t.Fatalf("found only %d anomaly names: the scan no longer matches the code", len(seen))
	}
	for _, n := range []string{AnomalyPanic, "kerberos_unseal_failed", "smb3_wrong_credentials", "resync"} {
		if seen[n] == "" {
			t.Errorf("the scan missed %q (counted through a constant, a return value, a parameter)", n)
		}
	}
	family := regexp.MustCompile("`(smb[12])_bad_\\*`")
	wild := map[string]bool{}
	for _, m := range family.FindAllSubmatch(doc, -1) {
		wild[string(m[1])] = true
	}
	for n, where := range seen {
		if strings.Contains(string(doc), "`"+n+"`") {
			continue
		}
		if p := strings.SplitN(n, "_bad_", 2); len(p) == 2 && wild[p[0]] {
			continue
		}
		t.Errorf("anomaly %q (%s) is not documented in docs/anomalies.md", n, where)
	}
}

var anomalyName = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// moduleAnomalies finds, in every non-test Go file under root, the
// snake_case string literals that name an anomaly: arguments of a function
// whose name says anomaly (or of a parameter whose name does), keys of an
// Anomalies map, values of Anomaly* constants, and what a function named
// for anomalies returns. It maps each name to where it was seen.
func moduleAnomalies(t *testing.T, root string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (n == "testdata" || strings.HasPrefix(n, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	says := func(name string) bool { return strings.Contains(strings.ToLower(name), "anomal") }
	// Functions taking an anomaly name as a parameter: which arguments.
	params := map[string][]int{}
	for _, f := range files {
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			i := 0
			for _, field := range fd.Type.Params.List {
				for _, n := range field.Names {
					if says(n.Name) {
						params[fd.Name.Name] = append(params[fd.Name.Name], i)
					}
					i++
				}
				if len(field.Names) == 0 {
					i++
				}
			}
		}
	}
	seen := map[string]string{}
	add := func(e ast.Expr) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return
		}
		if s, err := strconv.Unquote(lit.Value); err == nil && anomalyName.MatchString(s) {
			seen[s] = fset.Position(lit.Pos()).String()
		}
	}
	callee := func(c *ast.CallExpr) string {
		switch fn := c.Fun.(type) {
		case *ast.Ident:
			return fn.Name
		case *ast.SelectorExpr:
			return fn.Sel.Name
		}
		return ""
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				name := callee(n)
				if says(name) {
					for _, a := range n.Args {
						add(a)
					}
				}
				for _, i := range params[name] {
					if i < len(n.Args) {
						add(n.Args[i])
					}
				}
			case *ast.IndexExpr:
				if sel, ok := n.X.(*ast.SelectorExpr); ok && says(sel.Sel.Name) {
					add(n.Index)
				}
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if says(id.Name) && i < len(n.Values) {
						add(n.Values[i])
					}
				}
			case *ast.FuncDecl:
				if says(n.Name.Name) && n.Body != nil {
					ast.Inspect(n.Body, func(m ast.Node) bool {
						if r, ok := m.(*ast.ReturnStmt); ok {
							for _, e := range r.Results {
								add(e)
							}
						}
						return true
					})
				}
			}
			return true
		})
	}
	return seen
}

// TestAnomalyScan: the scan finds names counted in a package nested below
// the root, in each of the ways the code counts them, and nothing else.
func TestAnomalyScan(t *testing.T) {
	got := moduleAnomalies(t, "testdata/anomalyscan")
	want := []string{"via_call", "via_constant", "via_index", "via_parameter", "via_return_one", "via_return_two"}
	if len(got) != len(want) {
		t.Errorf("found %v, want %v", got, want)
	}
	for _, n := range want {
		if got[n] == "" {
			t.Errorf("%s not found (found %v)", n, got)
		}
	}
}
