package memory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// A Summarizer folds turns that left the window into a session's summary.
// It is called in the background (and by Summarize), never by SaveTurn
// or LoadContext, with a context that ends at the memory's summary
// timeout.
type Summarizer interface {
	Summarize(ctx context.Context, req SummaryRequest) (string, error)
}

// A SummaryRequest is what a Summarizer folds.
type SummaryRequest struct {
	SessionID string // as the app named it (no tenant key)
	Previous  string // the summary so far; "" for none
	Turns     []Turn // the turns to fold in, oldest first, whole (tool calls with their results)
	MaxTokens int    // the summary's target size
}

// A Summary is what a session's summary covers.
type Summary = driver.Summary

// Summaries' defaults.
const (
	summaryTimeout   = 60 * time.Second // one Summarizer call
	summaryQueue     = 1024             // sessions waiting for the worker; more are dropped until a later save
	summaryChunk     = 50               // turns folded per Summarizer call
	summaryRetries   = 5                // attempts of the worker per session, with backoff
	summaryBackoff   = time.Second      // the first retry's delay, doubled each time
	summaryLeasePoll = 20 * time.Millisecond
	summaryInterval  = time.Second // the worker folds a session at most once per interval
)

// errLeaseHeld says another process (or this one's worker) holds the
// session's summary lease.
var errLeaseHeld = errors.New("summary lease held")

// summarizer is a memory's summaries: the Summarizer, the backend's store
// and the background worker. Tenant views share it.
type summarizer struct {
	s         Summarizer
	store     driver.SummaryStore
	maxTokens int
	timeout   time.Duration // of one Summarizer call
	backoff   time.Duration // the worker's first retry delay, doubled each time
	interval  time.Duration // the worker folds a session at most once per interval

	queue   chan summaryJob
	pending sync.Map // session key -> struct{}: queued (or waiting out its interval), not yet taken
	last    sync.Map // session key -> time.Time: when the worker last began to fold it, for interval
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	failures atomic.Uint64 // failed Summarizer calls or writes (SummaryFailures)
	folds    atomic.Uint64 // summaries written
}

type summaryJob struct{ key, id string }

// WithSummarizer makes the memory keep a running summary of each
// session's turns older than its window (WithMaxTurns, WithTokenBudget):
// after a save pushes turns out of the window, a background worker folds
// them, whole and oldest first, into the session's summary with s, which
// aims at maxTokens tokens. LoadContext then returns the summary with the
// window (Window.Summary) and accounts for every turn: Summary.Turns +
// Unsummarized + len(Turns) == TurnCount. With a token budget the
// summary's tokens count against it. A nil s or maxTokens < 1 is an
// error; the memory's backend must be a driver.SummaryStore.
//
// Messages appended to a turn the summary already covers stay in the
// history (History, Search, Export) but are not folded into the summary.
func WithSummarizer(s Summarizer, maxTokens int) Option {
	return func(c *config) error {
		if s == nil {
			return fmt.Errorf("%w: summarizer must not be nil", ErrInvalidOption)
		}
		if maxTokens < 1 {
			return fmt.Errorf("%w: summary max tokens %d < 1", ErrInvalidOption, maxTokens)
		}
		c.summarizer, c.summaryTokens = s, maxTokens
		return nil
	}
}

// newSummarizer starts the worker of c's summarizer over b.
func newSummarizer(b driver.Backend, c config) (*summarizer, error) {
	if c.summarizer == nil {
		return nil, nil
	}
	st, ok := b.(driver.SummaryStore)
	if !ok {
		return nil, fmt.Errorf("%w: WithSummarizer: the backend %T keeps no summaries (driver.SummaryStore)", ErrInvalidOption, b)
	}
	return &summarizer{s: c.summarizer, store: st, maxTokens: c.summaryTokens, timeout: summaryTimeout, backoff: summaryBackoff, interval: summaryInterval,
		queue: make(chan summaryJob, summaryQueue), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// close stops the worker and waits for it.
func (z *summarizer) close() {
	if z == nil {
		return
	}
	z.once.Do(func() { close(z.stop) })
	<-z.done
}

// account makes w account for every turn with the memory's summarizer:
// the turns fit l's budget minus the summary's tokens, none of them is
// one the summary covers, and Unsummarized counts the rest. Without a
// summarizer it clears both fields.
func (m *PersistentBufferMemory) account(w Window, l limits) Window {
	if m.sum == nil {
		w.Summary, w.Unsummarized = nil, 0
		return w
	}
	covered := 0
	if w.Summary != nil {
		covered = min(w.Summary.Turns, w.TurnCount)
		if l.tokenBudget > 0 {
			w = driver.TrimWindow(w, l.maxTurns, max(l.tokenBudget-w.Summary.Tokens, 1))
		}
	}
	// The window holds the session's newest turns: cut those the
	// summary covers (a per-call window wider than the memory's may
	// reach them).
	if keep := w.TurnCount - covered; len(w.Turns) > keep {
		for _, t := range w.Turns[:len(w.Turns)-keep] {
			w.Tokens -= t.Tokens()
		}
		w.Turns = w.Turns[len(w.Turns)-keep:]
		if len(w.Turns) == 0 {
			w.Turns = nil
		}
	}
	w.Unsummarized = max(w.TurnCount-covered-len(w.Turns), 0)
	return w
}

// saved queues the session for the worker when a save of turn seq may
// have pushed turns out of the memory's window; it never blocks.
func (m *PersistentBufferMemory) saved(key, sessionID string, seq int) {
	if seq == 0 || (seq <= m.limits.maxTurns && (m.limits.tokenBudget == 0 || seq == 1)) {
		return
	}
	m.enqueue(key, sessionID)
}

// appended queues the session for the worker after an append, which
// under a token budget may push older turns out of the window.
func (m *PersistentBufferMemory) appended(key, sessionID string) {
	if m.limits.tokenBudget > 0 {
		m.enqueue(key, sessionID)
	}
}

// enqueue queues the session for the worker, once, without blocking.
func (m *PersistentBufferMemory) enqueue(key, sessionID string) {
	z := m.sum
	if z == nil {
		return
	}
	if _, queued := z.pending.LoadOrStore(key, struct{}{}); queued {
		return
	}
	select {
	case z.queue <- summaryJob{key: key, id: sessionID}:
	default:
		z.pending.Delete(key) // full: a later save queues it again
	}
}

// requeue queues j again after its interval, without blocking: a full
// queue drops it until a later save.
func (z *summarizer) requeue(j summaryJob) {
	select {
	case z.queue <- j:
	default:
		z.pending.Delete(j.key)
	}
}

// work is the background worker: it folds each queued session, retrying
// with backoff, until the memory closes.
func (m *PersistentBufferMemory) work() {
	z := m.sum
	defer close(z.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-z.stop:
			cancel()
		case <-z.done:
		}
	}()
	for {
		select {
		case <-z.stop:
			return
		case j := <-z.queue:
			// Fold a session at most once per interval: the saves of a
			// busy session meanwhile are folded together, so that the
			// worker's statements stay a small share of the saves'.
			if t, ok := z.last.Load(j.key); ok {
				if wait := z.interval - time.Since(t.(time.Time)); wait > 0 {
					time.AfterFunc(wait, func() { z.requeue(j) })
					continue
				}
			}
			z.pending.Delete(j.key)
			z.last.Store(j.key, time.Now())
			time.AfterFunc(z.interval, func() { z.last.Delete(j.key) })
			m.foldWithRetry(ctx, j)
		}
	}
}

// foldWithRetry folds j's session, retrying a failure with backoff; a lease
// another process holds is its work, not a failure.
func (m *PersistentBufferMemory) foldWithRetry(ctx context.Context, j summaryJob) {
	z := m.sum
	delay := z.backoff
	for attempt := 1; ; attempt++ {
		_, err := m.fold(ctx, j.key, j.id)
		if err == nil || errors.Is(err, errLeaseHeld) || ctx.Err() != nil {
			return
		}
		z.failures.Add(1)
		m.logger().LogAttrs(ctx, slog.LevelWarn, "turnkeep: summary failed",
			slog.String("session", j.key), slog.Int("attempt", attempt), slog.Any("error", err))
		if attempt == summaryRetries {
			return // the next save that pushes a turn out queues it again
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay *= 2
	}
}

func (m *PersistentBufferMemory) logger() *slog.Logger {
	if m.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.log
}

// Summarize folds, now, every turn older than the window into the
// session's summary and returns it. A session with nothing to fold gets
// its current summary (zero for none). It waits while another process
// holds the session's lease, and calls the Summarizer itself; a memory
// without a summarizer returns an error wrapping ErrInvalidOption.
func (m *PersistentBufferMemory) Summarize(ctx context.Context, sessionID string) (_ Summary, err error) {
	defer m.trace(&ctx, opSummarize, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return Summary{}, err
	}
	if m.sum == nil {
		return Summary{}, fmt.Errorf("memory: summarize: %w: no summarizer (WithSummarizer)", ErrInvalidOption)
	}
	for {
		s, err := m.fold(ctx, key, sessionID)
		if !errors.Is(err, errLeaseHeld) {
			if err != nil {
				return Summary{}, fmt.Errorf("memory: summarize: %w", err)
			}
			return s, nil
		}
		t := time.NewTimer(summaryLeasePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return Summary{}, fmt.Errorf("memory: summarize: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// fold folds the session's turns older than the memory's window into its
// summary, a chunk at a time, each under a lease of its own, until none is
// left, and returns the summary. errLeaseHeld: another holds the lease.
func (m *PersistentBufferMemory) fold(ctx context.Context, key, sessionID string) (Summary, error) {
	z := m.sum
	for {
		w, _, err := m.backend.Load(ctx, key, m.query(m.limits, driver.UnknownVersion))
		if err != nil {
			return Summary{}, err
		}
		w = m.account(driver.TrimWindow(w, m.limits.maxTurns, m.limits.tokenBudget), m.limits)
		var cur Summary
		if w.Summary != nil {
			cur = *w.Summary
		}
		target := w.TurnCount - len(w.Turns) // every turn older than the window
		if target <= cur.Turns {
			return cur, nil
		}
		owner := newOwner()
		got, ok, err := z.store.LeaseSummary(ctx, key, owner, m.now().Add(2*z.timeout))
		if err != nil {
			return Summary{}, err
		}
		if !ok {
			if w.TurnCount == 0 {
				return Summary{}, nil
			}
			return Summary{}, errLeaseHeld
		}
		// The window again, now that the lease orders this fold with any
		// clear or replacement: a target read before one would name turns
		// of a history that is gone.
		if w, _, err = m.backend.Load(ctx, key, m.query(m.limits, driver.UnknownVersion)); err != nil {
			_ = z.store.ReleaseSummary(context.WithoutCancel(ctx), key, owner)
			return Summary{}, err
		}
		w.Summary = &got // the leased summary is the one to cut the budget by
		w = m.account(driver.TrimWindow(w, m.limits.maxTurns, m.limits.tokenBudget), m.limits)
		target = w.TurnCount - len(w.Turns)
		written, err := m.foldChunk(ctx, key, sessionID, owner, got, target)
		m.cache.invalidate(key)
		if err != nil || !written {
			// Released for the next try; a failed release expires.
			_ = z.store.ReleaseSummary(context.WithoutCancel(ctx), key, owner)
			if err != nil {
				return Summary{}, err
			}
			// Landed nowhere: the session was cleared, replaced or
			// deleted meanwhile. Report what it holds now.
			w, _, err := m.backend.Load(ctx, key, m.query(m.limits, driver.UnknownVersion))
			if err != nil || w.Summary == nil {
				return Summary{}, err
			}
			return *w.Summary, nil
		}
	}
}

// foldChunk folds turns (prev.Turns, target], at most summaryChunk, into
// prev under owner's lease and writes the result. written is false when
// the write landed nowhere (the session was cleared, replaced or deleted
// meanwhile).
func (m *PersistentBufferMemory) foldChunk(ctx context.Context, key, sessionID, owner string, prev Summary, target int) (written bool, err error) {
	z := m.sum
	if prev.Turns >= target {
		return false, nil
	}
	through := min(target, prev.Turns+summaryChunk)
	turns, err := z.store.SummaryTurns(ctx, key, prev.Turns, through, summaryChunk)
	if err != nil {
		return false, err
	}
	if len(turns) == 0 {
		return false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, z.timeout)
	defer cancel()
	text, err := z.s.Summarize(cctx, SummaryRequest{SessionID: sessionID, Previous: prev.Text, Turns: turns, MaxTokens: z.maxTokens})
	if err != nil {
		return false, fmt.Errorf("summarizer: %w", err)
	}
	next := Summary{Text: text, Turns: prev.Turns + len(turns), UpdatedAt: m.now()}
	next.Tokens = m.counter.CountTokens(Message{Role: RoleSystem, Content: text})
	ok, err := z.store.WriteSummary(ctx, key, owner, prev.Turns, next)
	if err != nil {
		return false, err
	}
	if ok {
		z.folds.Add(1)
	}
	return ok, nil
}

func newOwner() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
