package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// inMemorySummary is a session's summary and the lease to write it.
type inMemorySummary struct {
	driver.Summary
	owner string
	until time.Time
}

var _ driver.SummaryStore = (*InMemoryBackend)(nil)

// LeaseSummary implements driver.SummaryStore.
func (b *InMemoryBackend) LeaseSummary(ctx context.Context, key, owner string, until time.Time) (driver.Summary, bool, error) {
	if err := checkRequest(ctx, key); err != nil {
		return driver.Summary{}, false, fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[key]
	if s == nil || (s.summary.owner != "" && s.summary.until.After(time.Now())) {
		return driver.Summary{}, false, nil
	}
	s.summary.owner, s.summary.until = owner, until
	return s.summary.Summary, true, nil
}

// WriteSummary implements driver.SummaryStore.
func (b *InMemoryBackend) WriteSummary(ctx context.Context, key, owner string, prev int, sum driver.Summary) (bool, error) {
	if err := checkRequest(ctx, key); err != nil {
		return false, fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[key]
	if s == nil || s.summary.owner != owner || s.summary.Turns != prev {
		return false, nil
	}
	s.summary = inMemorySummary{Summary: sum}
	s.version++
	return true, nil
}

// ReleaseSummary implements driver.SummaryStore.
func (b *InMemoryBackend) ReleaseSummary(ctx context.Context, key, owner string) error {
	if err := checkRequest(context.WithoutCancel(ctx), key); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.sessions[key]; s != nil && s.summary.owner == owner {
		s.summary.owner, s.summary.until = "", time.Time{}
	}
	return nil
}

// SummaryTurns implements driver.SummaryStore.
func (b *InMemoryBackend) SummaryTurns(ctx context.Context, key string, after, through, limit int) ([]driver.Turn, error) {
	if err := checkRequest(ctx, key); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if limit < 1 || after < 0 {
		return nil, fmt.Errorf("backend: summary turns: %w: after %d, limit %d (want after >= 0, limit >= 1)", driver.ErrInvalidQuery, after, limit)
	}
	b.mu.Lock()
	var stored []storedTurn
	if s := b.sessions[key]; s != nil {
		through = min(through, after+limit, len(s.turns))
		if after >= 0 && after < through {
			stored = append([]storedTurn(nil), s.turns[after:through]...) // copied under the lock, as Load does
		}
	}
	b.mu.Unlock()
	out := make([]driver.Turn, 0, len(stored))
	for i := range stored {
		t, err := stored[i].turn()
		if err != nil {
			return nil, err
		}
		t.Seq = after + i + 1
		out = append(out, t)
	}
	return out, nil
}

// PutSummary implements driver.SummaryStore.
func (b *InMemoryBackend) PutSummary(ctx context.Context, key string, sum driver.Summary) error {
	if err := checkRequest(ctx, key); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[key]
	if s == nil {
		return nil
	}
	if sum.Turns < 1 {
		sum = driver.Summary{}
	}
	s.summary = inMemorySummary{Summary: sum}
	s.version++
	return nil
}
