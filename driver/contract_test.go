package driver_test

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// movedNames are the names that left package memory for package driver
// (issue 18): an application never needs them.
var movedNames = []string{
	"Backend", "SessionStore", "Replacer", "EngineReporter", "Prepare", "PrepareTurn",
	"PrepareMessages", "PreparedTurn", "PreparedMessage", "DecodeMessage", "FillShorthand",
	"DerivedMessageID", "SessionKey", "ParseSessionKey", "ValidateSessionKey", "SearchTerms",
	"SearchText", "Snippet", "Saved", "Version", "NoSession", "WindowQuery", "TrimWindow",
}

// maxMemoryEntries bounds the lines of `go doc -short ./memory`: the
// app's package index stays small enough to learn in minutes.
// Issue 18 set 55, with later issues adding only the names their contracts
// spell out; with issue 20's and 21's names it is still 55, because the
// offline summarizer lives in package summarize.
const maxMemoryEntries = 55

func goTool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Skipf("go %s: %v (no go command)", strings.Join(args, " "), err)
	}
	return string(out)
}

// TestMemoryIndex checks that package memory lists at most
// maxMemoryEntries entries and none of the names a backend writer needs,
// not even as an alias.
func TestMemoryIndex(t *testing.T) {
	doc := goTool(t, "doc", "-short", "../memory")
	lines := strings.Split(strings.TrimSpace(doc), "\n")
	if len(lines) > maxMemoryEntries {
		t.Errorf("go doc -short ./memory lists %d entries; want at most %d:\n%s", len(lines), maxMemoryEntries, doc)
	}
	for _, name := range movedNames {
		re := regexp.MustCompile(`^\s*(type|func|const|var) ` + name + `\b`)
		for _, l := range lines {
			if re.MatchString(l) {
				t.Errorf("go doc -short ./memory lists %s, which belongs to package driver: %q", name, l)
			}
		}
	}
	// The names stay in driver, where a backend finds them.
	drv := goTool(t, "doc", "-short", ".")
	for _, name := range movedNames {
		if !regexp.MustCompile(`(?m)^\s*(type|func|const|var) ` + name + `\b`).MatchString(drv) {
			t.Errorf("go doc -short ./driver does not list %s", name)
		}
	}
}

// TestBackendDoesNotImportMemory checks that data flows down once: package
// backend builds on driver and dataflow, never on memory.
func TestBackendDoesNotImportMemory(t *testing.T) {
	for _, pkg := range []string{"../backend", "."} {
		deps := goTool(t, "list", "-deps", pkg)
		for _, d := range strings.Fields(deps) {
			if strings.HasSuffix(d, "/memory") {
				t.Errorf("go list -deps %s names %s; want no memory package", pkg, d)
			}
		}
	}
}
