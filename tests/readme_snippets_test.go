package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every Go snippet of the README preceded by a `<!-- snippet: FILE -->`
// comment is a run of lines of FILE, a runnable example that CI compiles
// and runs, so the README's code cannot drift from code that works.
func TestReadmeSnippetsAreExamples(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- snippet: (\\S+) -->\n```go\n(.*?)```")
	found := re.FindAllStringSubmatch(string(readme), -1)
	if len(found) < 3 {
		t.Fatalf("found %d README snippets with a source; want the first program's, the langchaingo and openai ones", len(found))
	}
	// The first program is shown whole, so that it can be copied and run.
	if found[0][1] != "examples/hello/main.go" {
		t.Errorf("the README's first snippet is from %s; want the first program, examples/hello/main.go", found[0][1])
	} else if src, err := os.ReadFile(filepath.Join("..", found[0][1])); err == nil && normalize(string(src)) != normalize(found[0][2]) {
		t.Errorf("the README's first program is not the whole of %s", found[0][1])
	}
	for _, m := range found {
		src, err := os.ReadFile(filepath.Join("..", m[1]))
		if err != nil {
			t.Errorf("snippet source: %v", err)
			continue
		}
		if !strings.Contains(normalize(string(src)), normalize(m[2])) {
			t.Errorf("the README snippet from %s is not in that file:\n%s", m[1], m[2])
		}
	}
}

// normalize drops each line's indentation, which the README does not keep.
func normalize(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}
