package dbtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// TestGaleraStarts starts three nodes and reports how long they took.
func TestGaleraStarts(t *testing.T) {
	g := dbtest.NewGalera(t, 3)
	t.Logf("3 nodes Synced in %s (node starts: %s, %s, %s)", g.Synced.Round(time.Millisecond),
		g.Nodes[0].Started.Round(time.Millisecond), g.Nodes[1].Started.Round(time.Millisecond), g.Nodes[2].Started.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range g.Nodes {
		if err := g.WaitSynced(ctx, i, 3); err != nil {
			t.Fatal(err)
		}
	}
}
