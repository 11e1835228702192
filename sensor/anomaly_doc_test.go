package sensor

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestAnomaliesDocumented: every anomaly name the sensor counts is listed in
// docs/anomalies.md, so operators can look up what a counter means.
func TestAnomaliesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/anomalies.md")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.go")
	name := regexp.MustCompile(`anomaly\("([a-z0-9_]+)"\)|Anomalies\["([a-z0-9_]+)"\]`)
	seen := map[string]bool{AnomalyPanic: true}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllSubmatch(b, -1) {
			seen[string(m[1])+string(m[2])] = true
		}
	}
	if len(seen) < 20 {
		t.Fatalf("found only %d anomaly names: the pattern no longer matches the code", len(seen))
	}
	family := regexp.MustCompile("`(smb[12])_bad_\\*`")
	wild := map[string]bool{}
	for _, m := range family.FindAllSubmatch(doc, -1) {
		wild[string(m[1])] = true
	}
	for n := range seen {
		if strings.Contains(string(doc), "`"+n+"`") {
			continue
		}
		if p := strings.SplitN(n, "_bad_", 2); len(p) == 2 && wild[p[0]] {
			continue
		}
		t.Errorf("anomaly %q is not documented in docs/anomalies.md", n)
	}
}
