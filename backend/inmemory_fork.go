package backend

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// How InMemoryBackend forks. A fork's turns slice is its parent's, cut at
// the fork point with its capacity clipped there: the stored turns are
// shared, not copied, and the fork's first save allocates a slice of its
// own. Stored turns are never modified, but an append replaces a slot of
// the slice; so a session whose slots a fork shares (shared) copies its
// slice before it replaces one, and a fork refuses an append to a turn it
// inherited (errInheritedTurn). The ID sets are copied: a fork costs one
// map insert per turn and message it inherits, and no copy of a message.
//
// Each fork records where it left its parent (forkOf, kept as provenance
// whatever becomes of the parent), which session stores its inherited
// turns (base) and how many of its leading turns that is (inherited):
// search over a tenant or a user returns a message once, under the
// session that stored it. When the base's history goes (a clear, a
// replacement, a deletion), its forks keep their turns and now store the
// ones their base stored themselves: they take the base's own base, and
// inherit min(theirs, the base's) turns (repointForks). The SQL backend keeps
// the same rules with rows.

var _ driver.Forker = (*InMemoryBackend)(nil)

// inMemoryFork is what a session that is a fork knows of its ancestry.
type inMemoryFork struct {
	point     *driver.ForkPoint // where it was forked; nil for no fork
	base      string            // the key of the session storing its inherited turns; "" when none
	inherited int               // its leading turns that base (and base's ancestors) store
	shared    bool              // a fork shares slots of turns: copy it before replacing one
	order     uint64            // the backend's fork counter when it was forked, to order ListForks
}

// Fork makes child hold parent's turns up to and including atTurnID,
// sharing them. It implements driver.Forker.
func (b *InMemoryBackend) Fork(ctx context.Context, parent, atTurnID, child string) error {
	if err := checkRequest(ctx, parent); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if err := checkRequest(ctx, child); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if err := driver.ValidateTurnID(atTurnID); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	tenant, parentID := driver.ParseSessionKey(parent)
	if t, _ := driver.ParseSessionKey(child); t != tenant {
		return fmt.Errorf("backend: fork %s: %w: the fork %s is in another tenant", sessionName(parent), driver.ErrInvalidSessionID, sessionName(child))
	}
	if parent == child {
		return fmt.Errorf("backend: fork %s: %w: a session cannot be forked into itself", sessionName(parent), bare{driver.ErrSessionExists})
	}
	now := time.Now().UTC().Truncate(time.Microsecond)

	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.sessions[parent]
	k := -1
	if p != nil {
		for i := len(p.turns) - 1; i >= 0; i-- {
			if p.turns[i].id == atTurnID {
				k = i
				break
			}
		}
	}
	if k < 0 {
		return fmt.Errorf("backend: fork: %w", errTurnNotFound(parent, atTurnID))
	}
	c := b.sessions[child]
	if at, ok := b.erased[child]; ok && c == nil && (at.IsZero() || at.After(now)) {
		return fmt.Errorf("backend: fork: %s: %w", sessionName(child), bare{driver.ErrSessionDeleted})
	}
	switch {
	case c != nil && c.user != "" && c.user != p.user:
		return fmt.Errorf("backend: fork: %s: %w", sessionName(child), bare{driver.ErrSessionOwned})
	case c != nil && len(c.turns) > 0:
		return fmt.Errorf("backend: fork: %s: %w: it holds turns", sessionName(child), bare{driver.ErrSessionExists})
	}

	n := k + 1
	f := &inMemorySession{
		turns:     p.turns[:n:n],
		ids:       make(map[string]struct{}, n),
		msgIDs:    make(map[string]struct{}),
		version:   driver.Version(rand.Int64N(1<<62)) + 1,
		createdAt: now,
		updatedAt: now,
		user:      p.user,
	}
	if c != nil { // an empty session, created for the fork: keep what it was given
		f.createdAt, f.title, f.metadata, f.version = c.createdAt, c.title, c.metadata, c.version+1
	}
	for i := range f.turns {
		f.ids[f.turns[i].id] = struct{}{}
		for j := range f.turns[i].msgs {
			f.msgIDs[f.turns[i].msgs[j].ID] = struct{}{}
		}
	}
	b.forks++
	f.inMemoryFork = inMemoryFork{point: &driver.ForkPoint{SessionID: parentID, TurnID: atTurnID}, base: parent, inherited: n, order: b.forks}
	// The turns of the fork that the parent inherited itself are stored
	// further up: point at the session that stores the newest of them.
	for base := p; base != nil && f.inherited <= base.inherited && base.base != ""; base = b.sessions[base.base] {
		f.base = base.base
	}
	if sum := p.summary.Summary; sum.Turns > 0 && sum.Turns <= n {
		f.summary = inMemorySummary{Summary: sum}
	}
	p.shared = true
	if b.sessions == nil {
		b.sessions = make(map[string]*inMemorySession)
	}
	b.sessions[child] = f
	return nil
}

// ListForks returns the sessions forked from key, newest first, at most
// limit. It implements driver.Forker.
func (b *InMemoryBackend) ListForks(ctx context.Context, key string, limit int) ([]driver.SessionInfo, error) {
	if err := checkRequest(ctx, key); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if limit < 1 || limit > driver.MaxForks {
		return nil, fmt.Errorf("backend: list forks: %w: limit %d, want 1 to %d", driver.ErrInvalidQuery, limit, driver.MaxForks)
	}
	tenant, id := driver.ParseSessionKey(key)
	type entry struct {
		key string
		s   *inMemorySession
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var forks []entry
	for k, s := range b.sessions {
		if s.point == nil || s.point.SessionID != id {
			continue
		}
		if t, _ := driver.ParseSessionKey(k); t == tenant {
			forks = append(forks, entry{k, s})
		}
	}
	slices.SortFunc(forks, func(a, b entry) int {
		return cmp.Or(b.s.createdAt.Compare(a.s.createdAt), cmp.Compare(b.s.order, a.s.order), strings.Compare(b.key, a.key))
	})
	out := make([]driver.SessionInfo, 0, min(len(forks), limit))
	for _, e := range forks[:min(len(forks), limit)] {
		info, err := e.s.info(e.key)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// repoint keeps the forks whose turns the session key stores whole when
// its history goes: they store those turns themselves from now on. b.mu
// is held; s is the session as it was.
func (b *InMemoryBackend) repointForks(key string, s *inMemorySession) {
	for _, f := range b.sessions {
		if f.base == key {
			f.base, f.inherited = s.base, min(f.inherited, s.inherited)
			f.shared = true // its slots are its siblings' too
		}
	}
}

// writableTurn checks that the session may replace its turn at index i
// (an append), and makes its slot its own: an error wrapping
// driver.ErrNotSupported for a turn a fork inherited. b.mu is held.
func (s *inMemorySession) writableTurn(key string, i int) error {
	if i < s.inherited {
		return errInheritedTurn(key, s.turns[i].id)
	}
	if s.shared {
		s.turns, s.shared = slices.Clone(s.turns), false
	}
	return nil
}

// errInheritedTurn is the error of an append to a turn a fork inherited:
// the turn is its parent's too, and an append would change both. It
// wraps driver.ErrNotSupported.
func errInheritedTurn(key, turnID string) error {
	return fmt.Errorf("%s turn %q: %w: the fork inherited it from the session it was forked from; fork after it to add to it", sessionName(key), turnID, bare{driver.ErrNotSupported})
}
