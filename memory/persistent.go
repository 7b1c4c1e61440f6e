package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/otelx"
)

// PersistentBufferMemory is a Memory that stores turns in a driver.Backend and
// caches each session's window in front of it. See the package doc for its
// consistency guarantees. It is safe for concurrent use; the zero value is
// not usable (its methods return ErrClosed): make one with
// NewPersistentBufferMemory.
type PersistentBufferMemory struct {
	tenant   string // ForTenant: every session key is in it
	err      error  // ForTenant with an invalid tenant: every method returns it
	backend  driver.Backend
	limits   limits // the window cached and returned by default
	maxBytes int
	counter  TokenCounter
	cached   bool          // windows are cached
	stale    time.Duration // WithStaleReads: how long a hit may skip the backend
	now      func() time.Time
	cache    *sessionCache // shared by every tenant view, keyed by session key
	closed   *atomic.Bool  // shared by every tenant view
	onClose  func() error  // run by the first Close: what turnkeep.Open made (close_hook.go)
	sum      *summarizer   // WithSummarizer; nil for none; shared by every tenant view

	tel        *otelx.Recorder // nil: nothing to record (see newTelemetry)
	log        *slog.Logger    // nil: discard
	logContent bool            // WithLogContent
}

// NewPersistentBufferMemory returns a Memory over b. An invalid option or a
// nil b yields an error wrapping ErrInvalidOption.
//
// Windows are cached unless WithCacheTTL(0) says otherwise; a backend that
// does not version sessions (it reports driver.UnknownVersion) is read through on
// every load unless WithStaleReads allows stale windows.
func NewPersistentBufferMemory(b driver.Backend, opts ...Option) (*PersistentBufferMemory, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: backend must not be nil", ErrInvalidOption)
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err // already says which option
	}
	m := &PersistentBufferMemory{
		backend:  b,
		limits:   limits{maxTurns: c.maxTurns, tokenBudget: c.tokenBudget},
		maxBytes: c.maxMessageBytes,
		counter:  c.counter,
		stale:    c.staleReads,
		now:      time.Now,
		cache:    newSessionCache(c.maxCachedSessions, c.cacheTTL),
		closed:   new(atomic.Bool),

		log:        c.logger,
		logContent: c.logContent,
	}
	m.cached = c.cacheTTL > 0
	if m.sum, err = newSummarizer(b, c); err != nil {
		return nil, err
	}
	if m.tel, err = newTelemetry(c, m.cache.stats.snapshot); err != nil {
		return nil, fmt.Errorf("%w: telemetry: %w", ErrInvalidOption, err)
	}
	if m.sum != nil {
		go m.work()
	}
	return m, nil
}

// Close makes every later call return ErrClosed, drops every cached
// window and stops reporting the cache's metrics. It does not close a
// backend passed to NewPersistentBufferMemory; a memory made by
// turnkeep.Open closes its backend and database too. Calling it again
// returns nil.
func (m *PersistentBufferMemory) Close() error {
	if m == nil || m.cache == nil || m.closed == nil || m.closed.Swap(true) {
		return nil
	}
	m.sum.close()
	m.cache.clear()
	err := m.tel.Close()
	if m.onClose != nil {
		err = errors.Join(err, m.onClose())
	}
	return err
}

// check returns ErrClosed for a closed or zero memory, then validates the
// session ID and returns the session's key in the memory's tenant.
func (m *PersistentBufferMemory) check(sessionID string) (string, error) {
	if err := m.usable(); err != nil {
		return "", err
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return "", err
	}
	return driver.SessionKey(m.tenant, sessionID), nil
}

// usable returns ErrClosed for a closed or zero memory, and the error of a
// view of an invalid tenant.
func (m *PersistentBufferMemory) usable() error {
	if m == nil || m.backend == nil || m.closed == nil {
		return fmt.Errorf("%w: not made by NewPersistentBufferMemory", ErrClosed)
	}
	if m.closed.Load() {
		return ErrClosed
	}
	return m.err
}

// ForTenant returns a view of m whose every operation is confined to
// tenant: the same session ID in two tenants names two sessions, and
// listing, search and deletion see only the tenant's sessions. It shares
// m's backend, cache, options and Close. The default tenant is "". An
// invalid tenant (ValidateTenant) yields a view whose methods return an
// error wrapping ErrInvalidTenant.
func (m *PersistentBufferMemory) ForTenant(tenant string) *PersistentBufferMemory {
	if m == nil {
		return nil
	}
	v := *m
	v.tenant = tenant
	if v.err == nil {
		v.err = ValidateTenant(tenant)
	}
	return &v
}

// Tenant returns the tenant the memory is confined to ("" by default).
func (m *PersistentBufferMemory) Tenant() string {
	if m == nil {
		return ""
	}
	return m.tenant
}

// SaveTurn validates turn (as driver.Prepare does), counts its messages' tokens and
// stores it in the backend; invalid input never reaches the backend. If the
// backend fails, the error is returned and the session's cached window is
// dropped, so the next LoadContext reads what the backend really holds.
//
// The turn is appended to a cached window only when the backend's answer
// proves the window was the session's newest state just before the save
// (its turn count and version moved by exactly this turn); otherwise the
// window is dropped. So a save never appends onto a stale window, whatever
// other processes did.
//
// A turn with Seq > 0 is a guarded save: it is stored only as the
// session's turn Seq, checked by the backend in the save's own statement
// or transaction, so that two servers saving the same Seq at once store
// one turn. Otherwise SaveTurn returns an error wrapping ErrConflict,
// nothing is written, and the cached window is dropped (the next
// LoadContext reads the session as it is, each turn with its Seq, from
// which a retry can take Seq = TurnCount+1). A turn whose ID the session
// holds already is stored once and is no conflict, whatever its Seq.
func (m *PersistentBufferMemory) SaveTurn(ctx context.Context, sessionID string, turn Turn) (err error) {
	defer m.trace(&ctx, opSaveTurn, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return err
	}
	p, err := driver.Prepare(turn, m.now(), m.maxBytes, m.counter)
	if err != nil {
		return err
	}
	seq, err := m.saveTurn(ctx, key, p)
	if err != nil {
		return fmt.Errorf("memory: save turn: %w", err)
	}
	m.saved(key, sessionID, seq)
	return nil
}

// saveTurn stores p in the session key, keeping the cache exact, and
// returns the turn's sequence number (0 when it stored nothing).
func (m *PersistentBufferMemory) saveTurn(ctx context.Context, key string, p driver.PreparedTurn) (int, error) {
	t := p.Turn
	if !m.cached {
		res, err := m.backend.Save(ctx, key, p)
		if err == nil {
			m.logWrite(ctx, "turnkeep: turn saved", key, t.ID, t.Messages, t.Metadata, res)
		}
		return res.Seq, err
	}

	e, err := m.cache.acquire(ctx, key, m.now())
	if err != nil {
		return 0, err
	}
	defer m.cache.release(e)
	res, err := m.backend.Save(ctx, key, p)
	if err != nil {
		// Drop the window rather than keep it: the turn is not in it, and
		// if the failure left the outcome unknown (a connection lost during
		// COMMIT) the next load reads what was really stored.
		m.cache.invalidate(key)
		m.logInvalidated(ctx, "SaveTurn", key, err)
		return 0, err
	}
	m.logWrite(ctx, "turnkeep: turn saved", key, t.ID, t.Messages, t.Metadata, res)
	t.Seq = res.Seq // the window holds the turn as a load reads it
	stale := false  // another writer moved the session
	m.cache.update(e, m.now(), func(s *snapshot) *snapshot {
		switch {
		case !res.Stored:
			return s // the backend already held the ID and changed nothing
		case res.Version == driver.UnknownVersion:
			return nil // only a read can tell what the session holds now
		case res.Seq == 1:
			// The session held nothing before this turn, whatever the
			// window said: it is exactly this turn now.
			return m.snapshot([]Turn{t}, 1, res.Version, nil)
		case s == nil:
			return nil
		case s.count+1 != res.Seq || s.version+1 != res.Version:
			stale = true
			return nil // another writer moved the session: the window is stale
		}
		turns := make([]Turn, 0, len(s.turns)+1)
		return m.snapshot(append(append(turns, s.turns...), t), res.Seq, res.Version, s.summary)
	})
	if stale {
		m.logStale(ctx, "SaveTurn", key)
	}
	return res.Seq, nil
}

// AppendMessages adds msgs to the session's stored turn turnID, atomically:
// all of them are stored or none. A message whose ID the session already
// holds is not stored again, so a retry stores nothing twice; give each
// message an ID for that (an empty one gets a random ID). It is
// ErrTurnNotFound if the session has no such turn. Any turn may be
// appended to, not only the newest, and token windows stay exact.
//
// This is how an answer is stored as it streams: SaveTurn the user's
// message before calling the model, then append the answer's messages as
// they come, and a crash mid-answer loses nothing the user typed.
func (m *PersistentBufferMemory) AppendMessages(ctx context.Context, sessionID, turnID string, msgs ...Message) (err error) {
	defer m.trace(&ctx, opAppendMessages, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return err
	}
	if err := driver.ValidateTurnID(turnID); err != nil {
		return err
	}
	enc, err := driver.PrepareMessages(msgs, m.maxBytes, m.counter)
	if err != nil {
		return err
	}
	if !m.cached {
		res, err := m.backend.Append(ctx, key, turnID, enc)
		if err != nil {
			return fmt.Errorf("memory: append messages: %w", err)
		}
		m.logWrite(ctx, "turnkeep: messages appended", key, turnID, msgs, nil, res)
		m.appended(key, sessionID)
		return nil
	}
	e, err := m.cache.acquire(ctx, key, m.now())
	if err != nil {
		return fmt.Errorf("memory: append messages: %w", err)
	}
	defer m.cache.release(e)
	res, err := m.backend.Append(ctx, key, turnID, enc)
	if err != nil {
		m.cache.invalidate(key)
		m.logInvalidated(ctx, "AppendMessages", key, err)
		return fmt.Errorf("memory: append messages: %w", err)
	}
	m.logWrite(ctx, "turnkeep: messages appended", key, turnID, msgs, nil, res)
	stale := false // another writer moved the session
	m.cache.update(e, m.now(), func(s *snapshot) *snapshot {
		switch {
		case !res.Stored:
			return s // every message was stored already
		case s == nil || res.Version == driver.UnknownVersion || res.Messages != len(enc):
			return nil // some messages were held, or the window is unknown
		case s.version+1 != res.Version:
			stale = true
			return nil // another writer moved the session
		}
		i := indexID(s.turns, turnID)
		if i < 0 {
			// The turn is older than the window (which always holds the
			// newest): growing it leaves the window as it is.
			return &snapshot{turns: s.turns, count: s.count, tokens: s.tokens, version: res.Version, summary: s.summary}
		}
		turns := append([]Turn(nil), s.turns...)
		t := turns[i]
		t.Messages = append(append(make([]Message, 0, len(t.Messages)+len(enc)), t.Messages...), messagesOf(enc)...)
		driver.FillShorthand(&t)
		turns[i] = t
		return m.snapshot(turns, s.count, res.Version, s.summary)
	})
	if stale {
		m.logStale(ctx, "AppendMessages", key)
	}
	m.appended(key, sessionID)
	return nil
}

// snapshot makes the cached window of turns: cut to the memory's limits.
func (m *PersistentBufferMemory) snapshot(turns []Turn, count int, v driver.Version, sum *Summary) *snapshot {
	w := driver.TrimWindow(Window{Turns: turns, TurnCount: count}, m.limits.maxTurns, m.limits.tokenBudget)
	return &snapshot{turns: w.Turns, count: count, tokens: w.Tokens, version: v, summary: sum}
}

func messagesOf(enc []driver.PreparedMessage) []Message {
	out := make([]Message, len(enc))
	for i := range enc {
		out[i] = enc[i].Message
	}
	return out
}

// LoadContext returns the newest whole turns of the session, oldest first,
// within the window's limits (WithMaxTurns and WithTokenBudget, or opts
// for this call), its total turn count and the window's tokens. A cached
// window is returned only once the backend confirms, in one small read,
// that the session has not changed (or, under WithStaleReads, while the
// window was confirmed within that bound). A call whose opts ask for more
// than the cached window holds reads through. The Turns slice is the
// caller's; the messages and Metadata maps are shared with the cache and
// must be treated as read-only. A context that is already done is an
// error, even when the cache could answer.
func (m *PersistentBufferMemory) LoadContext(ctx context.Context, sessionID string, opts ...LoadOption) (_ Window, err error) {
	hit := false
	defer m.trace(&ctx, opLoadContext, sessionID).endLoad(&err, &hit)
	key, err := m.check(sessionID)
	if err != nil {
		return Window{}, err
	}
	l, err := m.limits.apply(opts)
	if err != nil {
		return Window{}, err
	}
	if err := ctx.Err(); err != nil { // even when the cache could answer
		return Window{}, fmt.Errorf("memory: load context: %w", err)
	}
	if !m.cached || !l.within(m.limits) {
		m.cache.stats.misses.Add(1)
		w, _, err := m.backend.Load(ctx, key, m.query(l, driver.UnknownVersion))
		if err != nil {
			return Window{}, fmt.Errorf("memory: load context: %w", err)
		}
		return m.account(driver.TrimWindow(w, l.maxTurns, l.tokenBudget), l), nil // the backend's slice is ours
	}
	w, hit, err := m.loadCached(ctx, key)
	if err != nil {
		return Window{}, fmt.Errorf("memory: load context: %w", err)
	}
	if l != m.limits {
		w = driver.TrimWindow(w, l.maxTurns, l.tokenBudget)
	}
	return m.account(w, l), nil
}

func (m *PersistentBufferMemory) query(l limits, known driver.Version) driver.WindowQuery {
	return driver.WindowQuery{MaxTurns: l.maxTurns, TokenBudget: l.tokenBudget, Known: known, Counter: m.counter, Summary: m.sum != nil}
}

// loadCached is LoadContext of the memory's own window, through the
// cache, and whether the cache answered.
func (m *PersistentBufferMemory) loadCached(ctx context.Context, sessionID string) (Window, bool, error) {
	start := m.now()
	if m.stale > 0 {
		if s, checked := m.cache.get(sessionID, start); s != nil && start.Sub(checked) < m.stale {
			if err := m.backendErr(); err != nil {
				return Window{}, false, err
			}
			m.cache.stats.hits.Add(1)
			return s.window(), true, nil
		}
	}
	e, s, gen := m.cache.pin(sessionID, start)
	defer m.cache.unpin(e)
	known := driver.UnknownVersion
	if s != nil {
		known = s.version
	}
	w, v, err := m.backend.Load(ctx, sessionID, m.query(m.limits, known))
	if err != nil {
		return Window{}, false, err
	}
	if v == known && v != driver.UnknownVersion {
		m.cache.stats.hits.Add(1)
		m.cache.confirm(e, gen, start)
		return s.window(), true, nil
	}
	if s != nil {
		m.cache.stats.stale.Add(1)
		m.logStale(ctx, "LoadContext", sessionID)
	}
	m.cache.stats.misses.Add(1)
	// The backend's slice is ours: kept as the immutable snapshot, cloned
	// once for the caller.
	s = m.snapshot(w.Turns, w.TurnCount, v, w.Summary)
	if v == driver.UnknownVersion && m.stale == 0 {
		// A backend that does not version sessions cannot confirm a
		// cached window: keeping one would only cost memory.
		return s.window(), false, nil
	}
	m.cache.install(e, gen, s, start)
	return s.window(), false, nil
}

// Stats returns a snapshot of the cache counters.
func (m *PersistentBufferMemory) Stats() CacheStats {
	if m == nil || m.cache == nil {
		return CacheStats{}
	}
	return m.cache.stats.snapshot()
}

// Figures are a memory's counters: its cache's (Stats), beside the
// engine's under its backend, when the backend reports them.
type Figures struct {
	Cache  CacheStats
	Engine map[string]uint64 // driver.EngineReporter.EngineStats of the backend; nil if it is none

	Summaries       uint64 // summaries written (WithSummarizer)
	SummaryFailures uint64 // failed summarizer calls or summary writes, each retried with backoff (and logged)
}

// Figures returns a snapshot of the cache counters and of the engine's.
func (m *PersistentBufferMemory) Figures() Figures {
	f := Figures{Cache: m.Stats()}
	if m != nil && m.sum != nil {
		f.Summaries, f.SummaryFailures = m.sum.folds.Load(), m.sum.failures.Load()
	}
	if m != nil {
		if r, ok := m.backend.(driver.EngineReporter); ok {
			f.Engine = r.EngineStats()
		}
	}
	return f
}

// backendErr reports a backend that can say it is closed (such as one
// over a closed database), so that a cache never answers for it.
func (m *PersistentBufferMemory) backendErr() error {
	if c, ok := m.backend.(interface{ Err() error }); ok {
		return c.Err()
	}
	return nil
}

// Clear removes the session from the backend and the cache. The cached
// window is dropped even if the backend fails, since it may have cleared.
func (m *PersistentBufferMemory) Clear(ctx context.Context, sessionID string) (err error) {
	defer m.trace(&ctx, opClear, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return err
	}
	if !m.cached {
		if err := m.backend.ClearSession(ctx, key); err != nil {
			return fmt.Errorf("memory: clear: %w", err)
		}
		return nil
	}
	e, err := m.cache.acquire(ctx, key, m.now())
	if err != nil {
		return fmt.Errorf("memory: clear: %w", err)
	}
	defer m.cache.release(e)
	err = m.backend.ClearSession(ctx, key)
	m.cache.invalidate(key)
	if err != nil {
		return fmt.Errorf("memory: clear: %w", err)
	}
	return nil
}

// InvalidateCache drops the cached window of the session, so the next
// LoadContext reads it whole. It is never needed for correctness: loads
// confirm cached windows with the backend (see the package doc).
func (m *PersistentBufferMemory) InvalidateCache(sessionID string) {
	if m == nil || m.cache == nil {
		return
	}
	m.cache.invalidate(driver.SessionKey(m.tenant, sessionID))
}
