package backend

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// Import stores an import all or nothing (driver.SessionStore's
// contract). It holds the backend's lock while it reads, so that the
// import is one step for every other caller, and changes the session only
// after the last turn is read and checked. It implements
// driver.SessionStore.
func (b *InMemoryBackend) Import(ctx context.Context, key string, info driver.SessionInfo, next func() (driver.PreparedTurn, error)) error {
	return b.importSession(ctx, key, info, nil, next)
}

var _ driver.SummaryImporter = (*InMemoryBackend)(nil)

// ImportSummary is Import with the session's summary stored in the same
// step, after the last turn, by the rule of driver.SummaryImporter. It
// implements driver.SummaryImporter.
func (b *InMemoryBackend) ImportSummary(ctx context.Context, key string, info driver.SessionInfo, sum driver.Summary, next func() (driver.PreparedTurn, error)) error {
	return b.importSession(ctx, key, info, &sum, next)
}

// importSession stores an import, and sum, when not nil, with it: every
// check, importFault's too, runs before the session changes.
func (b *InMemoryBackend) importSession(ctx context.Context, key string, info driver.SessionInfo, sum *driver.Summary, next func() (driver.PreparedTurn, error)) error {
	if err := checkRequest(ctx, key); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	meta, err := encodeMetadata(info.Metadata)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[key]
	if s != nil && s.user != info.User && (s.user != "" || len(s.turns) > 0) {
		return refusedOwner(key, s.user)
	}
	held := map[string]storedTurn{} // the session's turns by ID, and the import's
	at := map[string]int{}          // their positions (Seq)
	msgIDs := map[string]struct{}{} // the import's message IDs
	if s != nil {
		for i, st := range s.turns {
			held[st.id], at[st.id] = st, i+1
		}
	}
	var add []storedTurn
	for {
		p, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("backend: %w", err)
		}
		if !p.Prepared() {
			if p, err = driver.Prepare(p.Turn, now, driver.DefaultMaxMessageBytes, nil); err != nil {
				return fmt.Errorf("backend: %w", err)
			}
		}
		st := storedTurn{id: p.ID, at: p.Timestamp, metadata: p.Metadata, msgs: p.Encoded, tokens: p.Tokens()}
		if _, ok := at[st.id]; !ok { // a new turn: where it lands
			at[st.id] = len(add) + 1
			if s != nil {
				at[st.id] += len(s.turns)
			}
		}
		if p.Seq != 0 && p.Seq != at[st.id] {
			return fmt.Errorf("backend: %s turn %q: %w: Seq %d, but it is turn %d", sessionName(key), st.id, bare{driver.ErrInvalidImport}, p.Seq, at[st.id])
		}
		if h, ok := held[st.id]; ok {
			stored, err := (&h).turn()
			if err != nil {
				return err
			}
			same, err := sameMessages(stored.Messages, st.msgs)
			if err != nil {
				return fmt.Errorf("backend: %w", err)
			}
			if !same {
				return fmt.Errorf("backend: %s turn %q: %w: the session holds other messages under its id", sessionName(key), st.id, bare{driver.ErrInvalidImport})
			}
			continue
		}
		for i := range st.msgs {
			id := st.msgs[i].ID
			inSession := false
			if s != nil {
				_, inSession = s.msgIDs[id]
			}
			if _, inImport := msgIDs[id]; inSession || inImport {
				return fmt.Errorf("backend: %s turn %q: %w: a message id of it is held by another turn", sessionName(key), st.id, bare{driver.ErrInvalidImport})
			}
			msgIDs[id] = struct{}{}
		}
		held[st.id] = st
		add = append(add, st)
	}
	held0 := 0
	if s != nil {
		held0 = len(s.turns)
	}
	putSummary := sum != nil && sum.Turns >= 1 && sum.Turns <= held0+len(add) && (s == nil || s.summary.Turns < sum.Turns)
	if putSummary && importFault != nil {
		if err := importFault(key); err != nil {
			return fmt.Errorf("backend: %w", err)
		}
	}
	if s == nil {
		created := now
		if !info.CreatedAt.IsZero() {
			created = info.CreatedAt.UTC().Truncate(time.Microsecond)
		}
		s = &inMemorySession{ids: make(map[string]struct{}), msgIDs: make(map[string]struct{}), createdAt: created, version: driver.Version(rand.Int64N(1<<62)) + 1}
		if b.sessions == nil {
			b.sessions = make(map[string]*inMemorySession)
		}
		b.sessions[key] = s
	}
	if info.User != "" || info.Title != "" || meta != nil {
		s.user, s.title, s.metadata, s.updatedAt = info.User, info.Title, meta, now
	}
	for _, st := range add {
		s.ids[st.id] = struct{}{}
		for i := range st.msgs {
			s.msgIDs[st.msgs[i].ID] = struct{}{}
		}
		s.turns = append(s.turns, st)
		s.updatedAt = now
		if len(s.turns) > 1 {
			s.version++
		}
	}
	if putSummary {
		s.summary = inMemorySummary{Summary: *sum}
		s.version++
	}
	return nil
}
