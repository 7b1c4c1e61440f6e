package conformance

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

var sessionChecks = []check{
	{"Owners", func(t *testing.T, b Backend) {
		s := sessionStore(t, b)
		ctx := context.Background()
		noErr(t, s.CreateSession(ctx, "s", driver.SessionInfo{User: "ada", Title: "plans", Metadata: map[string]any{"k": "v"}}), "create session")
		i := info(t, b, "s")
		if i.User != "ada" || i.Title != "plans" || i.Metadata["k"] != "v" || i.TurnCount != 0 || i.ForkOf != nil {
			t.Fatalf("created session: got %+v; want owner ada, title plans, metadata k=v, no turns, no fork", i)
		}
		wantErr(t, s.CreateSession(ctx, "s", driver.SessionInfo{User: "bob"}), driver.ErrSessionOwned, "create a session another user owns")
		// Owners match exactly, never by pattern or case.
		wantErr(t, s.CreateSession(ctx, "s", driver.SessionInfo{User: "Ada"}), driver.ErrSessionOwned, "create as Ada a session ada owns")
		wantErr(t, s.ClaimSession(ctx, "s", "bob"), driver.ErrSessionOwned, "claim a session another user owns")
		noErr(t, s.ClaimSession(ctx, "s", "ada"), "claim of one's own session")

		saveAll(t, b, "loose", "t1")
		wantErr(t, s.CreateSession(ctx, "loose", driver.SessionInfo{User: "bob"}), driver.ErrSessionExists, "create an unowned session that holds turns")
		noErr(t, s.ClaimSession(ctx, "loose", "bob"), "claim an unowned session")
		if i := info(t, b, "loose"); i.User != "bob" || i.TurnCount != 1 {
			t.Fatalf("claimed session: got %+v; want owner bob, 1 turn", i)
		}
		wantErr(t, s.ClaimSession(ctx, "nobody", "bob"), driver.ErrSessionNotFound, "claim a session that does not exist")
	}},
	{"Tenants", func(t *testing.T, b Backend) {
		s := sessionStore(t, b)
		ctx := context.Background()
		acme, globex := driver.SessionKey("acme", "s"), driver.SessionKey("globex", "s")
		saveAll(t, b, "s", "d1")
		saveAll(t, b, acme, "a1", "a2")
		save(t, b, globex, turn("g1", "the pineapple plan", "ok"))
		wantWindow(t, b, "s", 10, 1, "d1")
		wantWindow(t, b, acme, 10, 2, "a1", "a2")
		wantWindow(t, b, globex, 10, 1, "g1")
		if got := info(t, b, acme); got.ID != "s" {
			t.Fatalf("session info of %q: got ID %q; want the session ID s, not the key", acme, got.ID)
		}
		if hits := search(t, s, "acme", driver.SearchQuery{Text: "pineapple"}); len(hits) != 0 {
			t.Fatalf("tenant acme found globex's message: %+v", hits)
		}
		if hits := search(t, s, "globex", driver.SearchQuery{Text: "pineapple"}); len(hits) != 1 || hits[0].SessionID != "s" || hits[0].TurnID != "g1" {
			t.Fatalf("search in globex: got %+v; want session s turn g1", hits)
		}
		p, err := s.ListSessions(ctx, "acme", driver.SessionQuery{Limit: 10})
		noErr(t, err, "list sessions")
		if len(p.Sessions) != 1 || p.Sessions[0].ID != "s" || p.Sessions[0].TurnCount != 2 {
			t.Fatalf("acme's sessions: got %+v; want s with 2 turns", p.Sessions)
		}
		noErr(t, b.ClearSession(ctx, acme), "clear acme's s")
		wantWindow(t, b, "s", 10, 1, "d1")
		wantWindow(t, b, globex, 10, 1, "g1")
	}},
	{"List", func(t *testing.T, b Backend) {
		s := sessionStore(t, b)
		ctx := context.Background()
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			user := "ada"
			if id == "c" {
				user = "bob"
			}
			noErr(t, s.CreateSession(ctx, id, driver.SessionInfo{User: user}), "create "+id)
			saveAll(t, b, id, id+"1")
		}
		var got []string
		q := driver.SessionQuery{User: "ada", Limit: 2}
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatalf("list sessions: more pages than sessions")
			}
			p, err := s.ListSessions(ctx, "", q)
			noErr(t, err, "list sessions")
			for _, i := range p.Sessions {
				got = append(got, i.ID)
				if i.User != "ada" || i.TurnCount != 1 {
					t.Fatalf("listed session: got %+v; want owner ada, 1 turn", i)
				}
			}
			if p.Next == "" {
				break
			}
			q.After = p.Next
		}
		// Most recently updated first: they were written in order.
		if want := []string{"e", "d", "b", "a"}; !slices.Equal(got, want) {
			t.Fatalf("ada's sessions: got %q; want %q", got, want)
		}
		_, err := s.ListSessions(ctx, "", driver.SessionQuery{After: "not a cursor", Limit: 2})
		wantErr(t, err, driver.ErrInvalidCursor, "list with a bad cursor")
	}},
	{"History", func(t *testing.T, b Backend) {
		s := sessionStore(t, b)
		ctx := context.Background()
		saveAll(t, b, "s", "t1", "t2", "t3", "t4", "t5")
		for _, newest := range []bool{false, true} {
			var got []string
			q := driver.HistoryQuery{Limit: 2, NewestFirst: newest}
			for pages := 0; ; pages++ {
				if pages > 5 {
					t.Fatalf("history: more pages than turns")
				}
				p, err := s.History(ctx, "s", q)
				noErr(t, err, "history")
				got = append(got, ids(p.Turns)...)
				if p.Next == "" {
					break
				}
				q.After = p.Next
			}
			want := []string{"t1", "t2", "t3", "t4", "t5"}
			if newest {
				slices.Reverse(want)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("history (newest first %v): got %q; want %q", newest, got, want)
			}
		}
	}},
	{"Search", func(t *testing.T, b Backend) {
		s := sessionStore(t, b)
		ctx := context.Background()
		noErr(t, s.CreateSession(ctx, "a", driver.SessionInfo{User: "ada"}), "create a")
		noErr(t, s.CreateSession(ctx, "b", driver.SessionInfo{User: "bob"}), "create b")
		save(t, b, "a", turn("t1", "where is the Pineapple", "on the table"))
		save(t, b, "b", turn("t1", "pineapple juice", "sure"))
		save(t, b, "b", turn("t2", "nothing here", "right"))
		if got := hitSessions(search(t, s, "", driver.SearchQuery{Text: "pineapple"})); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("tenant-wide search: got sessions %q; want [a b]", got)
		}
		if got := hitSessions(search(t, s, "", driver.SearchQuery{Text: "pineapple", User: "bob"})); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("bob's search: got sessions %q; want [b]", got)
		}
		if got := hitSessions(search(t, s, "", driver.SearchQuery{Text: "pineapple", User: "bo"})); len(got) != 0 {
			t.Fatalf("search of owner bo: got sessions %q; want none (owners match exactly)", got)
		}
		hits := search(t, s, "", driver.SearchQuery{Text: "PINEAPPLE table", SessionID: "a"})
		if len(hits) != 0 {
			// Every term in one message: no message of a holds both.
			t.Fatalf("search for two words in different messages: got %+v; want none", hits)
		}
		hits = search(t, s, "", driver.SearchQuery{Text: "pineapple", SessionID: "a"})
		if len(hits) != 1 || hits[0].TurnID != "t1" || hits[0].Message.Content != "where is the Pineapple" {
			t.Fatalf("search in a: got %+v; want its turn t1's user message", hits)
		}
	}},
	{"Erasure", func(t *testing.T, b Backend) {
		s := sessionStore(t, b)
		ctx := context.Background()
		for _, id := range []string{"a1", "a2"} {
			noErr(t, s.CreateSession(ctx, id, driver.SessionInfo{User: "ada"}), "create "+id)
			save(t, b, id, turn("t1", "ada's secret "+id, "noted"))
		}
		noErr(t, s.CreateSession(ctx, "b1", driver.SessionInfo{User: "bob"}), "create b1")
		save(t, b, "b1", turn("t1", "bob's secret", "noted"))
		user := "ada"
		r, keys, err := s.DeleteSessions(ctx, "", &user, time.Time{}, driver.DeleteBatch)
		noErr(t, err, "delete ada's sessions")
		slices.Sort(keys)
		if r.Sessions != 2 || r.Messages != 4 || !slices.Equal(keys, []string{"a1", "a2"}) {
			t.Fatalf("delete ada's sessions: got %+v, keys %q; want 2 sessions, 4 messages, [a1 a2]", r, keys)
		}
		for _, id := range []string{"a1", "a2"} {
			wantEmpty(t, b, id)
			p, err := s.History(ctx, id, driver.HistoryQuery{Limit: 10})
			noErr(t, err, "history of an erased session")
			if len(p.Turns) != 0 {
				t.Fatalf("history of erased %s: got %d turns; want none", id, len(p.Turns))
			}
		}
		if got := hitSessions(search(t, s, "", driver.SearchQuery{Text: "secret"})); !slices.Equal(got, []string{"b1"}) {
			t.Fatalf("search after erasure: got sessions %q; want [b1]", got)
		}
		p, err := s.ListSessions(ctx, "", driver.SessionQuery{Limit: 10})
		noErr(t, err, "list sessions")
		if len(p.Sessions) != 1 || p.Sessions[0].ID != "b1" {
			t.Fatalf("sessions after erasure: got %+v; want b1 alone", p.Sessions)
		}
	}},
}
