package backend

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

var _ driver.SessionStore = (*InMemoryBackend)(nil)

// listCursor is where a page of ListSessions ends: the last session's
// update time and key, the keyset the next page starts after.
type listCursor struct {
	UpdatedAt int64  `json:"u"` // Unix microseconds
	Key       string `json:"k"`
}

// historyCursor is where a page of History ends: the last turn's sequence.
type historyCursor struct {
	Seq int64 `json:"s"`
}

// encodeCursor and decodeCursor write and read a cursor as URL-safe base64
// JSON; anything else is driver.ErrInvalidCursor.
func encodeCursor(v any) string {
	data, _ := json.Marshal(v) // plain structs of numbers and strings
	return base64.RawURLEncoding.EncodeToString(data)
}

func decodeCursor(s string, v any) error {
	data, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		return fmt.Errorf("backend: %w: %q", bare{driver.ErrInvalidCursor}, s)
	}
	return nil
}

// CreateSession records the session's owner, title and metadata, creating
// it with no turns if need be; an unowned session that holds turns keeps
// no owner (driver.ErrSessionExists). It implements driver.SessionStore.
func (b *InMemoryBackend) CreateSession(ctx context.Context, key string, info driver.SessionInfo) error {
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
	} else if (s.user != "" && s.user != info.User) || (s.user == "" && len(s.turns) > 0) {
		return refusedOwner(key, s.user)
	}
	s.user, s.title, s.metadata, s.updatedAt = info.User, info.Title, meta, now
	return nil
}

// encodeMetadata is metadata's JSON, nil for none.
func encodeMetadata(m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("backend: %w: metadata: %w", driver.ErrInvalidTurn, err)
	}
	return data, nil
}

// ListSessions returns a page of the tenant's sessions, most recently
// updated first. It implements driver.SessionStore.
func (b *InMemoryBackend) ListSessions(ctx context.Context, tenant string, q driver.SessionQuery) (driver.SessionPage, error) {
	if err := ctx.Err(); err != nil {
		return driver.SessionPage{}, fmt.Errorf("backend: %w", err)
	}
	var after *listCursor
	if q.After != "" {
		after = new(listCursor)
		if err := decodeCursor(q.After, after); err != nil {
			return driver.SessionPage{}, err
		}
	}
	type entry struct {
		key string
		at  int64
		s   *inMemorySession
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var all []entry
	for key, s := range b.sessions {
		if t, _ := driver.ParseSessionKey(key); t != tenant || q.User != "" && s.user != q.User {
			continue
		}
		e := entry{key, s.updatedAt.UnixMicro(), s}
		if after != nil && cmp.Or(cmp.Compare(e.at, after.UpdatedAt), strings.Compare(e.key, after.Key)) >= 0 {
			continue
		}
		all = append(all, e)
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Or(cmp.Compare(b.at, a.at), strings.Compare(b.key, a.key)) })
	var p driver.SessionPage
	for i, e := range all {
		if i == q.Limit {
			last := all[i-1]
			p.Next = encodeCursor(listCursor{UpdatedAt: last.at, Key: last.key})
			break
		}
		info, err := e.s.info(e.key)
		if err != nil {
			return driver.SessionPage{}, err
		}
		p.Sessions = append(p.Sessions, info)
	}
	return p, nil
}

// DeleteSessions removes the tenant's sessions owned by user (when not
// nil) and updated before before (when not zero). It implements
// driver.SessionStore.
func (b *InMemoryBackend) DeleteSessions(ctx context.Context, tenant string, user *string, before time.Time, batch int) (driver.DeleteReport, []string, error) {
	if err := ctx.Err(); err != nil {
		return driver.DeleteReport{}, nil, fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var r driver.DeleteReport
	var keys []string
	for key, s := range b.sessions {
		if t, _ := driver.ParseSessionKey(key); t != tenant || user != nil && s.user != *user || !before.IsZero() && !s.updatedAt.Before(before) {
			continue
		}
		r.Sessions++
		for i := s.inherited; i < len(s.turns); i++ { // what it stored itself
			r.Messages += len(s.turns[i].msgs)
		}
		keys = append(keys, key)
	}
	for _, key := range keys {
		b.repointForks(key, b.sessions[key])
		delete(b.sessions, key)
	}
	if user != nil {
		// The whole deletion holds the lock: the saves it raced are
		// refused from here on, those begun after it returns are not.
		at := time.Now().UTC()
		for k, t := range b.erased {
			if t.Before(at.Add(-erasedKeep)) {
				delete(b.erased, k)
			}
		}
		if b.erased == nil && len(keys) > 0 {
			b.erased = make(map[string]time.Time)
		}
		for _, k := range keys {
			b.erased[k] = at
		}
	}
	return r, keys, nil
}

// Search finds messages whose content holds every term of q.Text, by a
// scan. It implements driver.SessionStore.
func (b *InMemoryBackend) Search(ctx context.Context, tenant string, q driver.SearchQuery) ([]driver.SearchHit, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	terms, err := driver.QueryTerms(q.Text)
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if q.Limit, err = driver.SearchLimit(q.Limit); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if len(terms) == 0 {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var hits []driver.SearchHit
	for key, s := range b.sessions {
		if err := ctx.Err(); err != nil { // a scan of every message: stop at the deadline
			return nil, fmt.Errorf("backend: %w", err)
		}
		t, id := driver.ParseSessionKey(key)
		if t != tenant || q.User != "" && s.user != q.User || q.SessionID != "" && id != q.SessionID {
			continue
		}
		turns := s.turns
		if q.SessionID == "" { // each message once, under the session that stored it
			turns = turns[s.inherited:]
		}
		for _, st := range turns {
			for _, pm := range st.msgs {
				text := " " + driver.SearchText(pm.Content) + " "
				score := 0
				for _, term := range terms {
					n := strings.Count(text, " "+term+" ")
					if n == 0 {
						score = 0
						break
					}
					score += n
				}
				if score == 0 {
					continue
				}
				m := pm.Message
				if err := driver.DecodeMessage(&m, pm.ToolCallsJSON, pm.PartsJSON, pm.MetadataJSON); err != nil {
					return nil, fmt.Errorf("backend: %w", err)
				}
				hits = append(hits, driver.SearchHit{SessionID: id, TurnID: st.id, Message: m,
					Snippet: driver.Snippet(m.Content, terms), Score: float64(score) / float64(1+len(text)/100), Time: st.at})
			}
		}
	}
	slices.SortStableFunc(hits, func(a, b driver.SearchHit) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), strings.Compare(a.SessionID, b.SessionID), strings.Compare(a.TurnID, b.TurnID))
	})
	if len(hits) > q.Limit {
		hits = hits[:q.Limit]
	}
	return hits, nil
}

// History returns a page of the session's turns. It implements
// driver.SessionStore.
func (b *InMemoryBackend) History(ctx context.Context, key string, q driver.HistoryQuery) (driver.HistoryPage, error) {
	if err := checkRequest(ctx, key); err != nil {
		return driver.HistoryPage{}, fmt.Errorf("backend: %w", err)
	}
	var after *historyCursor
	if q.After != "" {
		after = new(historyCursor)
		if err := decodeCursor(q.After, after); err != nil {
			return driver.HistoryPage{}, err
		}
	}
	b.mu.Lock()
	s := b.sessions[key]
	var turns []storedTurn
	if s != nil {
		turns = s.turns // stored turns are never modified
	}
	b.mu.Unlock()
	var p driver.HistoryPage
	seqs := make([]int64, 0, q.Limit)
	for i := range turns {
		k := i
		if q.NewestFirst {
			k = len(turns) - 1 - i
		}
		seq := int64(k + 1)
		if after != nil && (!q.NewestFirst && seq <= after.Seq || q.NewestFirst && seq >= after.Seq) {
			continue
		}
		if len(seqs) == q.Limit {
			p.Next = encodeCursor(historyCursor{Seq: seqs[len(seqs)-1]})
			break
		}
		t, err := turns[k].turn()
		if err != nil {
			return driver.HistoryPage{}, err
		}
		t.Seq = k + 1
		p.Turns = append(p.Turns, t)
		seqs = append(seqs, seq)
	}
	return p, nil
}

// turn decodes the stored turn.
func (st *storedTurn) turn() (driver.Turn, error) {
	t := driver.Turn{ID: st.id, Timestamp: st.at, Messages: make([]driver.Message, len(st.msgs))}
	if st.metadata != nil {
		if err := json.Unmarshal(st.metadata, &t.Metadata); err != nil {
			return driver.Turn{}, fmt.Errorf("backend: turn %s metadata: %w", st.id, err)
		}
	}
	for j := range st.msgs {
		p := &st.msgs[j]
		m := p.Message
		if err := driver.DecodeMessage(&m, p.ToolCallsJSON, p.PartsJSON, p.MetadataJSON); err != nil {
			return driver.Turn{}, fmt.Errorf("backend: %w", err)
		}
		t.Messages[j] = m
	}
	driver.FillShorthand(&t)
	return t, nil
}

var _ driver.Replacer = (*InMemoryBackend)(nil)

// Replace makes turns the session's whole history, atomically, keeping its
// owner, title and metadata. It implements driver.Replacer.
func (b *InMemoryBackend) Replace(ctx context.Context, key string, turns []driver.PreparedTurn) (driver.Saved, error) {
	if err := checkRequest(ctx, key); err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i := range turns {
		if !turns[i].Prepared() {
			p, err := driver.Prepare(turns[i].Turn, now, driver.DefaultMaxMessageBytes, nil)
			if err != nil {
				return driver.Saved{}, fmt.Errorf("backend: %w", err)
			}
			turns[i] = p
		}
	}
	if err := checkPositions(turns); err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.sessions[key]
	s := &inMemorySession{ids: make(map[string]struct{}), msgIDs: make(map[string]struct{}), createdAt: now, version: driver.Version(rand.Int64N(1<<62)) + 1}
	if old != nil {
		s.createdAt, s.user, s.title, s.metadata, s.version = old.createdAt, old.user, old.title, old.metadata, old.version+1
		s.point, s.order = old.point, old.order // provenance: it no longer shares turns
	}
	for _, p := range turns {
		st := storedTurn{id: p.ID, at: p.Timestamp, metadata: p.Metadata, msgs: p.Encoded, tokens: p.Tokens()}
		if _, dup := s.ids[st.id]; dup {
			return driver.Saved{}, fmt.Errorf("backend: %w: turn id %q given twice", driver.ErrInvalidTurn, st.id)
		}
		s.ids[st.id] = struct{}{}
		for i := range st.msgs {
			if _, dup := s.msgIDs[st.msgs[i].ID]; dup {
				return driver.Saved{}, fmt.Errorf("backend: %w: message id %q given twice", driver.ErrInvalidTurn, st.msgs[i].ID)
			}
			s.msgIDs[st.msgs[i].ID] = struct{}{}
		}
		s.turns = append(s.turns, st)
		s.version++
	}
	s.updatedAt = now
	if old != nil {
		b.repointForks(key, old)
	}
	if b.sessions == nil {
		b.sessions = make(map[string]*inMemorySession)
	}
	b.sessions[key] = s
	return driver.Saved{Stored: true, Seq: len(s.turns), Version: s.version}, nil
}
