package tiktoken_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestMemoryEmbedsNoTables checks that importing the memory package alone
// links no tokenizer: its dependencies hold no tiktoken package, while
// this package's do.
func TestMemoryEmbedsNoTables(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	deps := func(pkg string) []string {
		t.Helper()
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	isTokenizer := func(p string) bool { return strings.Contains(p, "tiktoken") || strings.Contains(p, "regexp2") }

	const mem = "github.com/turnkeep/turnkeep/memory"
	memDeps := deps(mem)
	if !slices.Contains(memDeps, mem) {
		t.Fatalf("go list -deps %s does not list the package itself: %v", mem, memDeps)
	}
	if i := slices.IndexFunc(memDeps, isTokenizer); i >= 0 {
		t.Errorf("%s depends on %s; want no tokenizer", mem, memDeps[i])
	}
	if !slices.ContainsFunc(deps("."), isTokenizer) {
		t.Error("this package lists no tokenizer among its dependencies; the check above proves nothing")
	}
}
