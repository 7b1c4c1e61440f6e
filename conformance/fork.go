package conformance

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// forkDepth is how deep Fork/Depth forks forks of forks.
const forkDepth = 12

// doFork forks parent at atTurnID into child.
func doFork(t *testing.T, f driver.Forker, parent, atTurnID, child string) {
	t.Helper()
	noErr(t, f.Fork(context.Background(), parent, atTurnID, child), fmt.Sprintf("fork %s at %s into %s", parent, atTurnID, child))
}

// wantForkOf checks the session's ForkOf.
func wantForkOf(t *testing.T, b Backend, key string, want *driver.ForkPoint) {
	t.Helper()
	got := info(t, b, key).ForkOf
	if (got == nil) != (want == nil) || got != nil && *got != *want {
		t.Fatalf("ForkOf of %s: got %+v; want %+v", key, got, want)
	}
}

var forkChecks = []check{
	{"Prefix", func(t *testing.T, b Backend) {
		f := forker(t, b)
		saveAll(t, b, "p", "t1", "t2", "t3", "t4", "t5")
		doFork(t, f, "p", "t3", "c")
		w := wantWindow(t, b, "c", 10, 3, "t1", "t2", "t3")
		if got := seqs(w.Turns); !slices.Equal(got, []int{1, 2, 3}) {
			t.Fatalf("fork's Seq: got %v; want [1 2 3]", got)
		}
		if w.Turns[2].User != "user says t3" {
			t.Fatalf("fork's turn t3: got user %q; want the parent's", w.Turns[2].User)
		}
		if s := save(t, b, "c", guarded("c4", 4)); !s.Stored || s.Seq != 4 {
			t.Fatalf("guarded save at 4 into the fork: got %+v; want Stored at Seq 4", s)
		}
		wantWindow(t, b, "c", 2, 4, "t3", "c4")
		wantWindow(t, b, "c", 10, 4, "t1", "t2", "t3", "c4")
		wantWindow(t, b, "p", 10, 5, "t1", "t2", "t3", "t4", "t5")
		// The budget window reads across the fork point.
		full, _ := load(t, b, "c", 10, 0)
		w, _ = load(t, b, "c", 10, full.Turns[2].Tokens()+full.Turns[3].Tokens())
		if got := ids(w.Turns); !slices.Equal(got, []string{"t3", "c4"}) {
			t.Fatalf("fork's budget window: got %q; want [t3 c4]", got)
		}
		if i := info(t, b, "c"); i.TurnCount != 4 || i.Tokens != full.Tokens {
			t.Fatalf("fork's info: got %d turns, %d tokens; want 4, %d", i.TurnCount, i.Tokens, full.Tokens)
		}
		wantForkOf(t, b, "c", &driver.ForkPoint{SessionID: "p", TurnID: "t3"})
		wantForkOf(t, b, "p", nil)
		p, err := f.History(context.Background(), "c", driver.HistoryQuery{Limit: 10})
		noErr(t, err, "history of the fork")
		if got := ids(p.Turns); !slices.Equal(got, []string{"t1", "t2", "t3", "c4"}) {
			t.Fatalf("fork's history: got %q; want [t1 t2 t3 c4]", got)
		}
		// The parent goes on alone.
		saveAll(t, b, "p", "t6")
		wantWindow(t, b, "c", 10, 4, "t1", "t2", "t3", "c4")
	}},
	{"ParentCleared", func(t *testing.T, b Backend) {
		f := forker(t, b)
		saveAll(t, b, "p", "t1", "t2", "t3")
		doFork(t, f, "p", "t2", "c")
		saveAll(t, b, "c", "c3")
		v := version(t, b, "c")
		noErr(t, b.ClearSession(context.Background(), "p"), "clear the parent")
		wantEmpty(t, b, "p")
		wantWindow(t, b, "c", 10, 3, "t1", "t2", "c3")
		wantForkOf(t, b, "c", &driver.ForkPoint{SessionID: "p", TurnID: "t2"})
		if got := version(t, b, "c"); got != v {
			t.Fatalf("fork's version after its parent's clear: got %d; want %d (its window did not change)", got, v)
		}
		// The parent's ID starts over, and the fork is not its.
		saveAll(t, b, "p", "n1")
		wantWindow(t, b, "c", 10, 3, "t1", "t2", "c3")
	}},
	{"ParentReplaced", func(t *testing.T, b Backend) {
		f := forker(t, b)
		r := replacer(t, b)
		saveAll(t, b, "p", "t1", "t2", "t3")
		doFork(t, f, "p", "t3", "c")
		_, err := r.Replace(context.Background(), "p", []driver.PreparedTurn{prepare(t, turn("t1", "replaced", "x"))})
		noErr(t, err, "replace the parent")
		w := wantWindow(t, b, "c", 10, 3, "t1", "t2", "t3")
		if w.Turns[0].User != "user says t1" {
			t.Fatalf("fork's t1 after its parent's replace: got user %q; want the original", w.Turns[0].User)
		}
		wantWindow(t, b, "p", 10, 1, "t1")
	}},
	{"ParentDeleted", func(t *testing.T, b Backend) {
		f := forker(t, b)
		ctx := context.Background()
		saveAll(t, b, "p", "t1", "t2")
		time.Sleep(10 * time.Millisecond)
		cut := time.Now()
		time.Sleep(10 * time.Millisecond)
		doFork(t, f, "p", "t2", "c")
		saveAll(t, b, "c", "c3")
		// Expire the sessions last written before cut: the parent only.
		_, keys, err := f.DeleteSessions(ctx, "", nil, cut, driver.DeleteBatch)
		noErr(t, err, "expire the parent")
		if !slices.Equal(keys, []string{"p"}) {
			t.Fatalf("expired: got %q; want [p]", keys)
		}
		wantEmpty(t, b, "p")
		wantWindow(t, b, "c", 10, 3, "t1", "t2", "c3")
		if got := hitSessions(search(t, f, "", driver.SearchQuery{Text: "says t1"})); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("search after the parent's deletion: got sessions %q; want [c]", got)
		}
	}},
	{"Chain", func(t *testing.T, b Backend) {
		// a <- b <- c: deleting the middle one, then the root, leaves c whole.
		f := forker(t, b)
		ctx := context.Background()
		saveAll(t, b, "a", "a1", "a2")
		doFork(t, f, "a", "a2", "b")
		saveAll(t, b, "b", "b3", "b4")
		doFork(t, f, "b", "b4", "c")
		saveAll(t, b, "c", "c5")
		noErr(t, b.ClearSession(ctx, "b"), "clear b")
		wantWindow(t, b, "c", 10, 5, "a1", "a2", "b3", "b4", "c5")
		noErr(t, b.ClearSession(ctx, "a"), "clear a")
		wantWindow(t, b, "c", 10, 5, "a1", "a2", "b3", "b4", "c5")
		if got := hitSessions(search(t, f, "", driver.SearchQuery{Text: "says a1"})); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("search for a1 after a and b went: got sessions %q; want [c]", got)
		}
	}},
	{"Depth", func(t *testing.T, b Backend) {
		f := forker(t, b)
		ctx := context.Background()
		name := func(i int) string { return fmt.Sprintf("s%02d", i) }
		want := []string{"turn00"}
		saveAll(t, b, name(0), want[0])
		for i := 1; i <= forkDepth; i++ {
			doFork(t, f, name(i-1), want[len(want)-1], name(i))
			id := fmt.Sprintf("turn%02d", i)
			saveAll(t, b, name(i), id)
			want = append(want, id)
		}
		last := name(forkDepth)
		w := wantWindow(t, b, last, 100, forkDepth+1, want...)
		for i, tr := range w.Turns {
			if tr.Seq != i+1 {
				t.Fatalf("depth %d: turn %s has Seq %d; want %d", forkDepth, tr.ID, tr.Seq, i+1)
			}
		}
		wantWindow(t, b, last, 3, forkDepth+1, want[len(want)-3:]...)
		hits := search(t, f, "", driver.SearchQuery{Text: "says turn00"})
		if got := hitSessions(hits); !slices.Equal(got, []string{name(0)}) {
			t.Fatalf("tenant-wide search for the root's turn: got sessions %q; want [%s]", got, name(0))
		}
		if got := hitSessions(search(t, f, "", driver.SearchQuery{Text: "says turn00", SessionID: last})); !slices.Equal(got, []string{last}) {
			t.Fatalf("search in %s for the root's turn: got sessions %q; want [%s]", last, got, last)
		}
		// Clear every ancestor, the odd ones first: the last fork stays whole.
		for _, odd := range []int{1, 0} {
			for i := 0; i < forkDepth; i++ {
				if i%2 == odd {
					noErr(t, b.ClearSession(ctx, name(i)), "clear "+name(i))
				}
			}
			wantWindow(t, b, last, 100, forkDepth+1, want...)
		}
		if got := hitSessions(search(t, f, "", driver.SearchQuery{Text: "says turn00"})); !slices.Equal(got, []string{last}) {
			t.Fatalf("search for the root's turn after its ancestors went: got sessions %q; want [%s]", got, last)
		}
	}},
	{"List", func(t *testing.T, b Backend) {
		f := forker(t, b)
		ctx := context.Background()
		saveAll(t, b, "p", "t1", "t2", "t3")
		saveAll(t, b, driver.SessionKey("acme", "p"), "t1")
		doFork(t, f, driver.SessionKey("acme", "p"), "t1", driver.SessionKey("acme", "x"))
		forks, err := f.ListForks(ctx, "p", 10)
		noErr(t, err, "list forks of an unforked session")
		if len(forks) != 0 {
			t.Fatalf("forks of p before any: got %+v; want none (acme's are acme's)", forks)
		}
		at := map[string]string{"f1": "t1", "f2": "t3", "f3": "t2"}
		for _, c := range []string{"f1", "f2", "f3"} {
			doFork(t, f, "p", at[c], c)
			time.Sleep(2 * time.Millisecond) // newest first: give each its own creation time
		}
		doFork(t, f, "f1", "t1", "g1") // a fork of a fork is its parent's, not p's
		forks, err = f.ListForks(ctx, "p", driver.MaxForks)
		noErr(t, err, "list forks")
		var got []string
		for _, i := range forks {
			got = append(got, i.ID)
			if i.ForkOf == nil || *i.ForkOf != (driver.ForkPoint{SessionID: "p", TurnID: at[i.ID]}) {
				t.Fatalf("fork %s: got ForkOf %+v; want p at %s", i.ID, i.ForkOf, at[i.ID])
			}
		}
		if want := []string{"f3", "f2", "f1"}; !slices.Equal(got, want) {
			t.Fatalf("forks of p: got %q; want %q, newest first", got, want)
		}
		forks, err = f.ListForks(ctx, "p", 2)
		noErr(t, err, "list 2 forks")
		if got := []string{forks[0].ID, forks[1].ID}; len(forks) != 2 || !slices.Equal(got, []string{"f3", "f2"}) {
			t.Fatalf("2 forks of p: got %q; want [f3 f2]", got)
		}
		p, err := f.ListSessions(ctx, "", driver.SessionQuery{Limit: 10})
		noErr(t, err, "list sessions")
		for _, i := range p.Sessions {
			if (i.ForkOf != nil) != (i.ID != "p") {
				t.Fatalf("listed session %s: got ForkOf %+v", i.ID, i.ForkOf)
			}
		}
		wantForkOf(t, b, "g1", &driver.ForkPoint{SessionID: "f1", TurnID: "t1"})
		wantForkOf(t, b, driver.SessionKey("acme", "x"), &driver.ForkPoint{SessionID: "p", TurnID: "t1"})
	}},
	{"Owner", func(t *testing.T, b Backend) {
		f := forker(t, b)
		ctx := context.Background()
		noErr(t, f.CreateSession(ctx, "p", driver.SessionInfo{User: "ada"}), "create p")
		save(t, b, "p", turn("t1", "the launch code is swordfish", "noted"))
		saveAll(t, b, "p", "t2")
		doFork(t, f, "p", "t1", "c")
		doFork(t, f, "c", "t1", "g")
		saveAll(t, b, "g", "g2")
		for _, k := range []string{"c", "g"} {
			if u := info(t, b, k).User; u != "ada" {
				t.Fatalf("owner of fork %s: got %q; want the parent's, ada", k, u)
			}
		}
		noErr(t, f.CreateSession(ctx, "bobs", driver.SessionInfo{User: "bob"}), "create bobs")
		err := f.Fork(ctx, "p", "t1", "bobs")
		wantErr(t, err, driver.ErrSessionOwned, "fork into a session bob owns")
		if i := info(t, b, "bobs"); i.User != "bob" || i.TurnCount != 0 || i.ForkOf != nil {
			t.Fatalf("bob's session after a refused fork: got %+v; want it unchanged", i)
		}
		noErr(t, f.CreateSession(ctx, "adas", driver.SessionInfo{User: "ada", Title: "empty"}), "create adas")
		doFork(t, f, "p", "t2", "adas") // ada's own empty session may become the fork
		if i := info(t, b, "adas"); i.User != "ada" || i.TurnCount != 2 {
			t.Fatalf("ada's empty session forked into: got %+v; want ada's, 2 turns", i)
		}

		user := "ada"
		r, keys, err := f.DeleteSessions(ctx, "", &user, time.Time{}, driver.DeleteBatch)
		noErr(t, err, "delete ada's sessions")
		slices.Sort(keys)
		if want := []string{"adas", "c", "g", "p"}; r.Sessions != 4 || !slices.Equal(keys, want) {
			t.Fatalf("delete ada's sessions: got %+v, keys %q; want 4 sessions, %q", r, keys, want)
		}
		for _, k := range keys {
			wantEmpty(t, b, k)
		}
		if hits := search(t, f, "", driver.SearchQuery{Text: "swordfish"}); len(hits) != 0 {
			t.Fatalf("search after ada's erasure: got %+v; want nothing", hits)
		}
		if hits := search(t, f, "", driver.SearchQuery{Text: "swordfish", SessionID: "g"}); len(hits) != 0 {
			t.Fatalf("search of erased fork g: got %+v; want nothing", hits)
		}
	}},
	{"Errors", func(t *testing.T, b Backend) {
		f := forker(t, b)
		ctx := context.Background()
		saveAll(t, b, "p", "t1", "t2")
		saveAll(t, b, "busy", "b1")
		wantErr(t, f.Fork(ctx, "p", "nope", "c"), driver.ErrTurnNotFound, "fork at a turn the parent lacks")
		wantErr(t, f.Fork(ctx, "none", "t1", "c"), driver.ErrTurnNotFound, "fork of a session that does not exist")
		wantEmpty(t, b, "c")
		wantErr(t, f.Fork(ctx, "p", "t1", "busy"), driver.ErrSessionExists, "fork into a session that holds turns")
		wantWindow(t, b, "busy", 10, 1, "b1")
		wantForkOf(t, b, "busy", nil)
		wantErr(t, f.Fork(ctx, "p", "t1", "p"), driver.ErrSessionExists, "fork of a session into itself")
		wantWindow(t, b, "p", 10, 2, "t1", "t2")
		doFork(t, f, "p", "t1", "c")
		wantErr(t, f.Fork(ctx, "p", "t2", "c"), driver.ErrSessionExists, "fork into a fork")
		wantWindow(t, b, "c", 10, 1, "t1")
		_, err := f.ListForks(ctx, "p", 0)
		if err == nil {
			t.Fatalf("list forks with limit 0: no error")
		}
	}},
	{"InheritedAppend", func(t *testing.T, b Backend) {
		f := forker(t, b)
		ctx := context.Background()
		saveAll(t, b, "p", "t1", "t2")
		doFork(t, f, "p", "t2", "c")
		saveAll(t, b, "c", "c3")
		v := version(t, b, "c")
		_, err := f.Append(ctx, "c", "t2", appendMsgs(t, driver.Message{Role: driver.RoleAssistant, Content: "into the parent's turn"}))
		wantErr(t, err, driver.ErrNotSupported, "append to a turn the fork inherited")
		if got := version(t, b, "c"); got != v {
			t.Fatalf("fork's version after a refused append: got %d; want %d", got, v)
		}
		for _, k := range []string{"p", "c"} {
			w, _ := load(t, b, k, 10, 0)
			if n := len(w.Turns[1].Messages); n != 2 {
				t.Fatalf("%s's turn t2 after a refused append: got %d messages; want 2", k, n)
			}
		}
		_, err = f.Append(ctx, "c", "c3", appendMsgs(t, driver.Message{Role: driver.RoleAssistant, Content: "own"}))
		noErr(t, err, "append to the fork's own turn")
		wc, _ := load(t, b, "c", 10, 0)
		if n := len(wc.Turns[2].Messages); n != 3 {
			t.Fatalf("fork's own turn after its append: got %d messages; want 3", n)
		}
	}},
	{"ParentAppend", func(t *testing.T, b Backend) {
		// The parent may append to a turn a fork shares; the fork keeps
		// the turn as it was forked.
		f := forker(t, b)
		ctx := context.Background()
		saveAll(t, b, "p", "t1", "t2")
		doFork(t, f, "p", "t2", "c")
		v := version(t, b, "c")
		_, err := f.Append(ctx, "p", "t2", appendMsgs(t, driver.Message{Role: driver.RoleAssistant, Content: "parent's addition"}))
		noErr(t, err, "append to the parent's turn")
		wp, _ := load(t, b, "p", 10, 0)
		wc, _ := load(t, b, "c", 10, 0)
		if np, nc := len(wp.Turns[1].Messages), len(wc.Turns[1].Messages); np != 3 || nc != 2 {
			t.Fatalf("turn t2 after the parent's append: parent %d messages, fork %d; want 3 and 2", np, nc)
		}
		if got := version(t, b, "c"); got != v {
			t.Fatalf("fork's version after its parent's append: got %d; want %d (its window did not change)", got, v)
		}
	}},
	{"AppendAfterParentCleared", func(t *testing.T, b Backend) {
		// An append to a turn the parent no longer holds is
		// ErrTurnNotFound, never a write into the fork's copy of it.
		f := forker(t, b)
		ctx := context.Background()
		saveAll(t, b, "p", "t1", "t2")
		doFork(t, f, "p", "t2", "c")
		noErr(t, b.ClearSession(ctx, "p"), "clear the parent")
		_, err := f.Append(ctx, "p", "t2", appendMsgs(t, driver.Message{Role: driver.RoleAssistant, Content: "late"}))
		wantErr(t, err, driver.ErrTurnNotFound, "append to the cleared parent's turn")
		if r, ok := b.(driver.Replacer); ok {
			saveAll(t, b, "q", "t1", "t2")
			doFork(t, f, "q", "t2", "d")
			_, err := r.Replace(ctx, "q", []driver.PreparedTurn{prepare(t, turn("n1", "a", "b"))})
			noErr(t, err, "replace")
			_, err = f.Append(ctx, "q", "t2", appendMsgs(t, driver.Message{Role: driver.RoleAssistant, Content: "late"}))
			wantErr(t, err, driver.ErrTurnNotFound, "append to the replaced parent's turn")
			wantWindow(t, b, "d", 10, 2, "t1", "t2")
		}
		w := wantWindow(t, b, "c", 10, 2, "t1", "t2")
		if n := len(w.Turns[1].Messages); n != 2 {
			t.Fatalf("fork's turn t2: got %d messages; want 2", n)
		}
	}},
	{"InheritedID", func(t *testing.T, b Backend) {
		f := forker(t, b)
		saveAll(t, b, "p", "t1", "t2", "t3")
		doFork(t, f, "p", "t2", "c")
		if s := save(t, b, "c", turn("t1", "again", "again")); s.Stored {
			t.Fatalf("save into the fork of a turn id it inherited: got %+v; want nothing stored", s)
		}
		// t3 is the parent's, after the fork point: new to the fork.
		if s := save(t, b, "c", turn("t3", "fork's own t3", "x")); !s.Stored || s.Seq != 3 {
			t.Fatalf("save into the fork of the parent's later turn id: got %+v; want Stored at Seq 3", s)
		}
		w := wantWindow(t, b, "c", 10, 3, "t1", "t2", "t3")
		if w.Turns[2].User != "fork's own t3" {
			t.Fatalf("fork's t3: got user %q; want its own", w.Turns[2].User)
		}
	}},
	{"Search", func(t *testing.T, b Backend) {
		f := forker(t, b)
		save(t, b, "p", turn("t1", "a pineapple question", "a pineapple answer"))
		saveAll(t, b, "p", "t2")
		doFork(t, f, "p", "t1", "c")
		save(t, b, "c", turn("c2", "another pineapple", "ok"))
		hits := search(t, f, "", driver.SearchQuery{Text: "pineapple"})
		var got []string
		for _, h := range hits {
			got = append(got, h.SessionID+"/"+h.TurnID)
		}
		slices.Sort(got)
		if want := []string{"c/c2", "p/t1", "p/t1"}; !slices.Equal(got, want) {
			t.Fatalf("tenant-wide search: got %q; want %q (each stored message once)", got, want)
		}
		hits = search(t, f, "", driver.SearchQuery{Text: "pineapple", SessionID: "c"})
		got = got[:0]
		for _, h := range hits {
			got = append(got, h.SessionID+"/"+h.TurnID)
		}
		slices.Sort(got)
		if want := []string{"c/c2", "c/t1", "c/t1"}; !slices.Equal(got, want) {
			t.Fatalf("search in the fork: got %q; want %q (its inherited turn too)", got, want)
		}
	}},
	{"Summary", func(t *testing.T, b Backend) {
		f := forker(t, b)
		s := summaryStore(t, b)
		ctx := context.Background()
		saveAll(t, b, "p", "t1", "t2", "t3", "t4")
		noErr(t, s.PutSummary(ctx, "p", driver.Summary{Text: "the first three", Turns: 3, Tokens: 3, UpdatedAt: time.Now()}), "put summary")
		doFork(t, f, "p", "t2", "short")
		doFork(t, f, "p", "t3", "at")
		doFork(t, f, "p", "t4", "long")
		for _, c := range []struct {
			key   string
			turns int // 0: no summary
		}{{"short", 0}, {"at", 3}, {"long", 3}} {
			w, _, err := b.Load(ctx, c.key, driver.WindowQuery{MaxTurns: 10, Known: driver.UnknownVersion, Summary: true})
			noErr(t, err, "load "+c.key)
			switch {
			case c.turns == 0 && w.Summary != nil:
				t.Fatalf("fork %s at turn 2: got a summary of %d turns; want none (it covers turns past the fork point)", c.key, w.Summary.Turns)
			case c.turns > 0 && (w.Summary == nil || w.Summary.Turns != c.turns || w.Summary.Text != "the first three"):
				t.Fatalf("fork %s: got summary %+v; want the parent's, of %d turns", c.key, w.Summary, c.turns)
			}
		}
	}},
	{"Coherence", func(t *testing.T, b Backend) {
		f := forker(t, b)
		ctx := context.Background()
		saveAll(t, b, "p", "t1", "t2")
		_, pv := load(t, b, "p", 10, 0)
		doFork(t, f, "p", "t1", "c")
		if got := version(t, b, "p"); got != pv {
			t.Fatalf("parent's version after a fork: got %d; want %d (it did not change)", got, pv)
		}
		_, cv := load(t, b, "c", 10, 0)
		if cv == driver.NoSession || cv == driver.UnknownVersion {
			t.Fatalf("fork's version: got %d; want a version of a session", cv)
		}
		w, got, err := b.Load(ctx, "c", driver.WindowQuery{MaxTurns: 10, Known: cv})
		noErr(t, err, "load the fork with its version")
		if got != cv || len(w.Turns) != 0 {
			t.Fatalf("load of the fork with its known version: got version %d, %d turns; want %d, none", got, len(w.Turns), cv)
		}
		saveAll(t, b, "c", "c2")
		if got := version(t, b, "c"); got == cv {
			t.Fatalf("fork's version after a save: still %d", cv)
		}
	}},
}
