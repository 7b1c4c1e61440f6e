package memory_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

// The offline summarizer's quality: a name and a number stated in turn 1
// of a 50-turn session are in its summary at the end.
func TestExtractiveSummarizerKeepsNameAndNumber(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		a, _, _ := summaryServers(t, d, summarize.NewExtractive(nil), memory.WithMaxTurns(5))
		require.NoError(t, a.SaveTurn(ctx, "s", memory.Turn{ID: "t1",
			User: "Hi, my name is Margarethe Vollstedt and my order number is 48213. Can you help me?", Agent: "Of course, happy to help."}))
		for i := 2; i <= 50; i++ {
			require.NoError(t, a.SaveTurn(ctx, "s", memory.Turn{ID: fmt.Sprintf("t%d", i),
				User: "what about the shipping options for it", Agent: fmt.Sprintf("Here is more about shipping, part %d of the answer.", i)}))
		}
		s, err := a.Summarize(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, 45, s.Turns)
		assert.Contains(t, s.Text, "Margarethe Vollstedt")
		assert.Contains(t, s.Text, "48213")
		assert.LessOrEqual(t, s.Tokens, 200+10, "within the target size")
	})
}
