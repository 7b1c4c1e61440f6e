package conformance_test

import (
	"flag"
	"fmt"
	"testing"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/conformance"
)

// A backend writer runs the suite from a test of the backend's own
// package, giving a fresh, empty backend to each subtest:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) conformance.Backend {
//			return mystore.New(t.TempDir()) // or a database of its own per subtest
//		})
//	}
//
// Here the test runs the in-memory backend through the suite.
func Example() {
	ok := runTest(func(t *testing.T) {
		conformance.Run(t, func(t *testing.T) conformance.Backend {
			return backend.NewInMemoryBackend()
		})
	})
	fmt.Println("conforms:", ok)
	// Output: conforms: true
}

// runTest runs fn as a test of its own, as go test runs a TestXxx, and
// reports whether it passed. It sets aside the flags of the example's own
// run (-v, -run, -skip) so that they neither select fn's subtests nor
// print into the example's output.
func runTest(fn func(t *testing.T)) bool {
	for name, value := range map[string]string{"test.v": "false", "test.run": "", "test.skip": ""} {
		if f := flag.Lookup(name); f != nil {
			old := f.Value.String()
			_ = f.Value.Set(value)
			defer f.Value.Set(old)
		}
	}
	all := func(pattern, name string) (bool, error) { return true, nil }
	return testing.RunTests(all, []testing.InternalTest{{Name: "TestConformance", F: fn}})
}
