package backend

import (
	"context"
	"strings"
	"testing"

	"github.com/turnkeep/turnkeep/conformance"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// sqlPending names the conformance subtests (Group/Check) that check a
// part of the fork contract DataFlowBackend does not keep yet, and the
// piece missing; they are skipped with that message until it lands.
var sqlPending = map[string]string{
	// backend/fork.go: the save's duplicate check reads the session's
	// own rows only, so the turn is stored again, as a new turn.
	"Fork/InheritedID": "a save into a fork of a turn ID its inherited prefix holds stores nothing (driver.Backend: a turn ID the session holds is stored once)",
}

// skipPending skips t when it is one of the subtests in pending.
func skipPending(t *testing.T, pending map[string]string) {
	t.Helper()
	for name, missing := range pending {
		if strings.HasSuffix(t.Name(), "/"+name) {
			t.Skipf("pending: %s", missing)
		}
	}
}

// TestConformanceInMemory runs package conformance against InMemoryBackend.
func TestConformanceInMemory(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Backend {
		return NewInMemoryBackend()
	})
}

// TestConformanceDataFlow runs package conformance against
// DataFlowBackend on every dialect, each subtest on a database of its own.
func TestConformanceDataFlow(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		conformance.Run(t, func(t *testing.T) conformance.Backend {
			skipPending(t, sqlPending)
			db, err := dataflow.Open(context.Background(), d.URL(t))
			if err != nil {
				t.Fatalf("open %s: %v", d.Name, err)
			}
			t.Cleanup(func() { db.Close() })
			b, err := NewDataFlowBackend(db)
			if err != nil {
				t.Fatalf("backend: %v", err)
			}
			return b
		})
	})
}
