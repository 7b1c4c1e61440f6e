package main

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// Versions: editing a sent message, or asking for another answer.
//
// A new version of a turn is a fork (memory.Fork) of the session at the
// turn before it, where the new turn is then said: the fork shares the
// history before the turn and goes its own way from there. The versions
// of a turn are the session that holds the turn's predecessor as its own
// (not inherited from a parent), with the forks of that session at that
// turn, oldest first: what the page shows as "< 2/3 >" beside the turn,
// and moving between them shows another session. A new version always
// forks that owning session (the history names it in the turn's fork, and
// the page posts there), so every version of a turn is a fork of one
// session at one turn and one ListForks finds them all, however deep the
// fork it is made from. The history pays for this a SessionInfo per
// ancestor of the session and a ListForks per session owning a shown turn:
// one more statement for a session that is no fork.
//
// A first turn has no turn before it to fork at: a new version of it is a
// new session, a chat of its own in the list, with no versions beside it.
//
// The session list shows a session and hides its forks (each is a version
// inside it); deleting a session deletes its forks with it.

// maxLineage bounds how many parents of a session the history follows to
// find the versions of its turns: forks of forks deeper than this show
// their older turns without versions.
const maxLineage = 64

// The JSON of versions in /history.
type (
	// forkJSON names a turn of a session: where a session was forked
	// (sessionJSON.ForkOf), or where a new version of a turn forks
	// (turnJSON.Fork).
	forkJSON struct {
		SessionID string `json:"session_id"`
		TurnID    string `json:"turn_id"`
	}
	// versionsJSON lists the versions of a turn.
	versionsJSON struct {
		Sessions []string `json:"sessions"` // oldest first
		Index    int      `json:"index"`    // of the session shown
	}
)

// newVersion makes a new version of a turn of the session and answers it:
// it forks the session at the turn "after" (the turn before the edited
// one, as /history's fork says), or, without "after", starts a new session
// (a new version of a first turn); there it stores "content" as a new turn
// and streams the answer as sendMessage does. The turn event names the new
// session.
func (s *server) newVersion(w http.ResponseWriter, r *http.Request) {
	user, info, ok := s.owned(w, r)
	if !ok {
		return
	}
	var in struct {
		After   string `json:"after"`
		Content string `json:"content"`
	}
	if !s.decode(w, r, &in, false) {
		return
	}
	content, ok := s.content(w, in.Content)
	if !ok {
		return
	}
	if !s.startAnswer() {
		s.fail(w, http.StatusServiceUnavailable, errors.New("the server is shutting down"))
		return
	}
	defer s.answers.Done()
	ctx := r.Context()
	v := memory.SessionInfo{ID: newSessionID(), User: user}
	if in.After != "" {
		if err := s.mem.Fork(ctx, info.ID, in.After, v.ID); err != nil {
			s.error(w, err)
			return
		}
		v.Title = info.Title // a version of the same chat
	}
	if err := s.mem.CreateSession(ctx, v); err != nil {
		s.error(w, err)
		return
	}
	s.answer(w, r, user, v, content)
}

// versions fills in the fork and the versions of view, turns of the
// session info in order: before is the ID of the turn before them ("" if
// unknown), and first says whether view[0] is the session's first turn.
// It returns the session the lineage starts at: info's first ancestor.
//
// The cost: a SessionInfo per ancestor of info, and a ListForks per
// session that owns the turn before one of view.
func (s *server) versions(ctx context.Context, user string, info memory.SessionInfo, view []*turnJSON, before string, first bool) (root string, err error) {
	lineage, err := s.lineage(ctx, user, info)
	if err != nil {
		return "", err
	}
	root = lineage[len(lineage)-1].ID
	if len(view) == 0 {
		return root, nil
	}
	view[0].First = first
	// Places in the view: before is -1; a turn older still is -2.
	place := make(map[string]int, len(view)+1)
	if before != "" {
		place[before] = -1
	}
	for i, t := range view {
		place[t.ID] = i
	}
	// bound[i]: the place of the turn lineage[i] was forked at, up to
	// which the view shows lineage[i+1]'s turns (-3: it is no fork).
	bound := make([]int, len(lineage))
	for i, l := range lineage {
		bound[i] = -3
		if l.ForkOf != nil {
			if b, ok := place[l.ForkOf.TurnID]; ok {
				bound[i] = b
			} else {
				bound[i] = -2
			}
		}
	}
	forks := map[string][]memory.SessionInfo{} // ListForks by session
	for i, t := range view {
		prev := before
		if i > 0 {
			prev = view[i-1].ID
		}
		if prev == "" || i == 0 && first {
			continue // a first turn, or one whose predecessor is unknown
		}
		// The session that holds prev as its own: climb while the view
		// inherits prev from a parent.
		o := 0
		for o < len(lineage) && i-1 <= bound[o] {
			o++
		}
		if o == len(lineage) {
			continue // inherited from a parent that is gone, or too far up
		}
		owner := lineage[o]
		t.Fork = &forkJSON{SessionID: owner.ID, TurnID: prev}
		shown := owner.ID
		if o > 0 && bound[o-1] == i-1 {
			shown = lineage[o-1].ID // the view follows a fork made at prev
		}
		fs, done := forks[owner.ID]
		if !done {
			if fs, err = s.mem.ListForks(ctx, owner.ID); err != nil && !errors.Is(err, memory.ErrNotSupported) {
				return "", err
			}
			forks[owner.ID] = fs
		}
		group := []string{owner.ID}
		for _, f := range slices.Backward(fs) { // ListForks is newest first
			if f.ForkOf != nil && f.ForkOf.TurnID == prev && f.User == user {
				group = append(group, f.ID)
			}
		}
		if len(group) > 1 {
			t.Versions = &versionsJSON{Sessions: group, Index: slices.Index(group, shown)}
		}
	}
	return root, nil
}

// lineage returns the session and its ancestors, nearest first, as far as
// they exist and are the user's, and at most maxLineage of them.
func (s *server) lineage(ctx context.Context, user string, info memory.SessionInfo) ([]memory.SessionInfo, error) {
	lineage := []memory.SessionInfo{info}
	for cur := info; cur.ForkOf != nil && len(lineage) < maxLineage; {
		p, err := s.mem.SessionInfo(ctx, cur.ForkOf.SessionID)
		if errors.Is(err, memory.ErrSessionNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		if p.User != user {
			break
		}
		lineage = append(lineage, p)
		cur = p
	}
	return lineage, nil
}

// clearTree deletes the session and, first, its forks, theirs, and so on.
func (s *server) clearTree(ctx context.Context, id string) error {
	for {
		forks, err := s.mem.ListForks(ctx, id)
		if err != nil && !errors.Is(err, memory.ErrNotSupported) {
			return err
		}
		for _, f := range forks {
			if err := s.clearTree(ctx, f.ID); err != nil {
				return err
			}
		}
		if len(forks) < driver.MaxForks { // else there may be more
			return s.mem.Clear(ctx, id)
		}
	}
}
