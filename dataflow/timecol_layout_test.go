package dataflow

import (
	"testing"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// The documented layout is the one binding uses.
func TestSQLiteTimeLayoutIsBound(t *testing.T) {
	if SQLiteTimeLayout != sqlcore.SQLiteTimeLayout {
		t.Fatalf("SQLiteTimeLayout = %q; want sqlcore's %q", SQLiteTimeLayout, sqlcore.SQLiteTimeLayout)
	}
}
