package memory_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// distinctWords is n distinct words.
func distinctWords(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "w%d ", i)
	}
	return b.String()
}

// QueryTerms is SearchTerms, each term once, within the limits.
func TestQueryTerms(t *testing.T) {
	cjk := strings.Repeat("我们明天在东京见面吧", 3)
	for _, tc := range []struct {
		name, text string
		want       []string
		invalid    bool
	}{
		{"empty", "", nil, false},
		{"syntax only", `" * - : ()`, nil, false},
		{"repeated, any case", "Fox fox FOX dog fox", []string{"fox", "dog"}, false},
		{"CJK by character, each once", cjk, []string{"我", "们", "明", "天", "在", "东", "京", "见", "面", "吧"}, false},
		{"MaxSearchTerms distinct", distinctWords(memory.MaxSearchTerms), driver.SearchTerms(distinctWords(memory.MaxSearchTerms)), false},
		{"MaxSearchBytes of one word repeated", strings.Repeat("ab ", memory.MaxSearchBytes/3), []string{"ab"}, false},
		{"one more distinct term", distinctWords(memory.MaxSearchTerms + 1), nil, true},
		{"one more byte", strings.Repeat("a", memory.MaxSearchBytes+1), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := driver.QueryTerms(tc.text)
			if tc.invalid {
				require.ErrorIs(t, err, memory.ErrInvalidQuery)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// A query over the limits is ErrInvalidQuery, reaches no store, and is
// refused without allocating in proportion to its text: before, a 1 MiB
// query (the message size limit) went to the store, which split all of it.
func TestSearchOverLimits(t *testing.T) {
	ctx := context.Background()
	store := newCountingStore()
	m := newPersistent(t, store).ForTenant("acme")
	huge := strings.Repeat("memory window ", memory.DefaultMaxMessageBytes/14)
	for _, text := range []string{huge, distinctWords(memory.MaxSearchTerms + 1), strings.Repeat("东京", memory.MaxSearchBytes)} {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		_, err := m.Search(ctx, memory.SearchQuery{Text: text})
		runtime.ReadMemStats(&ms)
		require.ErrorIs(t, err, memory.ErrInvalidQuery, "%d bytes", len(text))
		assert.Less(t, ms.TotalAlloc-before, uint64(64<<10), "bytes allocated to refuse %d bytes", len(text))
	}
	assert.Zero(t, store.calls.Load())
	require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{User: "东京 w1", Agent: "ok"}))
	hits, err := m.Search(ctx, memory.SearchQuery{Text: strings.Repeat("东京 W1 ", memory.MaxSearchBytes/16)})
	require.NoError(t, err)
	require.Len(t, hits, 1, "repeated terms count once")
}
