package conformance

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

var saveChecks = []check{
	{"Atomic", func(t *testing.T, b Backend) {
		ctx := context.Background()
		tool := driver.Turn{ID: "t1", Messages: []driver.Message{
			{Role: driver.RoleUser, Content: "what is the weather"},
			{Role: driver.RoleAssistant, ToolCalls: []driver.ToolCall{{ID: "c1", Name: "weather", Arguments: `{"city":"Oslo"}`}}},
			{Role: driver.RoleTool, ToolCallID: "c1", Content: "rain"},
			{Role: driver.RoleAssistant, Content: "it rains"},
		}}
		s := save(t, b, "s", tool)
		if !s.Stored || s.Seq != 1 || s.Messages != 4 {
			t.Fatalf("save: got %+v; want Stored, Seq 1, Messages 4", s)
		}
		w := wantWindow(t, b, "s", 10, 1, "t1")
		if got := len(w.Turns[0].Messages); got != 4 {
			t.Fatalf("loaded turn: got %d messages; want 4", got)
		}
		if m := w.Turns[0].Messages[1]; len(m.ToolCalls) != 1 || m.ToolCalls[0].Arguments != `{"city":"Oslo"}` {
			t.Fatalf("loaded tool call: got %+v; want the saved one", m.ToolCalls)
		}
		// A turn one of whose message IDs another turn holds is refused
		// whole: none of its messages is stored.
		bad := driver.Turn{ID: "t2", Messages: []driver.Message{
			{ID: "fresh", Role: driver.RoleUser, Content: "new"},
			{ID: w.Turns[0].Messages[0].ID, Role: driver.RoleAssistant, Content: "clash"},
		}}
		_, err := b.Save(ctx, "s", prepare(t, bad))
		wantErr(t, err, driver.ErrInvalidTurn, "save a turn with a held message id")
		wantWindow(t, b, "s", 10, 1, "t1")
	}},
	{"Idempotent", func(t *testing.T, b Backend) {
		save(t, b, "s", turn("t1", "hello", "hi"))
		v := version(t, b, "s")
		s := save(t, b, "s", turn("t1", "hello again", "other"))
		if s.Stored {
			t.Fatalf("save of a held turn id: got %+v; want Stored false", s)
		}
		w := wantWindow(t, b, "s", 10, 1, "t1")
		if w.Turns[0].User != "hello" {
			t.Fatalf("held turn: got user %q; want the first save's %q", w.Turns[0].User, "hello")
		}
		if got := version(t, b, "s"); got != v {
			t.Fatalf("version after a save that stored nothing: got %d; want %d", got, v)
		}
	}},
	{"Unprepared", func(t *testing.T, b Backend) {
		// A turn that driver.Prepare did not make is validated by the
		// backend: an invalid one is refused and writes nothing.
		ctx := context.Background()
		_, err := b.Save(ctx, "s", driver.PreparedTurn{Turn: driver.Turn{ID: "t1"}})
		wantErr(t, err, driver.ErrInvalidTurn, "save of a turn with no message")
		wantEmpty(t, b, "s")
		_, err = b.Save(ctx, "", prepare(t, turn("t1", "a", "b")))
		wantErr(t, err, driver.ErrInvalidSessionID, "save to an empty session id")
		if _, err := b.Save(ctx, "s", driver.PreparedTurn{Turn: turn("t1", "a", "b")}); err != nil {
			t.Fatalf("save of a valid unprepared turn: %v", err)
		}
		wantWindow(t, b, "s", 10, 1, "t1")
	}},
}

var windowChecks = []check{
	{"Newest", func(t *testing.T, b Backend) {
		wantEmpty(t, b, "s")
		saveAll(t, b, "s", "t1", "t2", "t3", "t4", "t5")
		wantWindow(t, b, "s", 3, 5, "t3", "t4", "t5")
		wantWindow(t, b, "s", 1, 5, "t5")
		wantWindow(t, b, "s", 100, 5, "t1", "t2", "t3", "t4", "t5")
		_, _, err := b.Load(context.Background(), "s", driver.WindowQuery{MaxTurns: 0, Known: driver.UnknownVersion})
		wantErr(t, err, driver.ErrInvalidOption, "load of 0 turns")
	}},
	{"TokenBudget", func(t *testing.T, b Backend) {
		long := driver.Turn{ID: "t3", Messages: []driver.Message{
			{Role: driver.RoleUser, Content: "a longer question with quite a few words in it to count"},
			{Role: driver.RoleAssistant, Content: "and a longer answer, also with a good number of words"},
		}}
		turns := []driver.Turn{turn("t1", "one", "two"), turn("t2", "three", "four"), long, turn("t4", "five", "six")}
		tokens := make([]int, len(turns))
		for i, tr := range turns {
			p := prepare(t, tr)
			tokens[i] = p.Tokens()
			if _, err := b.Save(context.Background(), "s", p); err != nil {
				t.Fatalf("save %s: %v", tr.ID, err)
			}
		}
		for _, c := range []struct {
			budget int
			want   []string
		}{
			{tokens[3] + tokens[2] + tokens[1], []string{"t2", "t3", "t4"}},
			{tokens[3] + tokens[2] + tokens[1] - 1, []string{"t3", "t4"}},
			{tokens[3] + tokens[2], []string{"t3", "t4"}},
			{tokens[3] + 1, []string{"t4"}},
			{1, []string{"t4"}}, // the newest turn always, even alone over the budget
		} {
			w, _ := load(t, b, "s", 10, c.budget)
			if got := ids(w.Turns); !slices.Equal(got, c.want) {
				t.Fatalf("budget %d (turn tokens %v): got %q; want %q", c.budget, tokens, got, c.want)
			}
			sum := 0
			for _, tr := range w.Turns {
				sum += tr.Tokens()
				if len(tr.Messages) != 2 {
					t.Fatalf("budget %d: turn %s split: %d messages; want 2", c.budget, tr.ID, len(tr.Messages))
				}
			}
			if w.Tokens != sum || w.TurnCount != 4 {
				t.Fatalf("budget %d: got Tokens %d, TurnCount %d; want %d, 4", c.budget, w.Tokens, w.TurnCount, sum)
			}
		}
		// The turn limit applies with the budget.
		w, _ := load(t, b, "s", 1, 1<<20)
		if got := ids(w.Turns); !slices.Equal(got, []string{"t4"}) {
			t.Fatalf("1 turn in a large budget: got %q; want [t4]", got)
		}
	}},
}

// appendMsgs prepares messages to append.
func appendMsgs(t *testing.T, msgs ...driver.Message) []driver.PreparedMessage {
	t.Helper()
	p, err := driver.PrepareMessages(msgs, 0, nil)
	noErr(t, err, "prepare messages")
	return p
}

var appendChecks = []check{
	{"IdempotentByMessageID", func(t *testing.T, b Backend) {
		ctx := context.Background()
		saveAll(t, b, "s", "t1", "t2")
		msgs := appendMsgs(t, driver.Message{ID: "m1", Role: driver.RoleTool, ToolCallID: "c1", Content: "result"},
			driver.Message{ID: "m2", Role: driver.RoleAssistant, Content: "done"})
		v := version(t, b, "s")
		s, err := b.Append(ctx, "s", "t1", msgs)
		noErr(t, err, "append")
		if !s.Stored || s.Messages != 2 || s.Seq != 1 {
			t.Fatalf("append: got %+v; want Stored, Seq 1, Messages 2", s)
		}
		if s.Version == v || version(t, b, "s") == v {
			t.Fatalf("append kept the version %d", v)
		}
		s, err = b.Append(ctx, "s", "t1", msgs)
		noErr(t, err, "append again")
		if s.Stored || s.Messages != 0 {
			t.Fatalf("append of held message ids: got %+v; want nothing stored", s)
		}
		w := wantWindow(t, b, "s", 10, 2, "t1", "t2")
		if got := len(w.Turns[0].Messages); got != 4 {
			t.Fatalf("appended turn: got %d messages; want 4", got)
		}
		if m := w.Turns[0].Messages[3]; m.ID != "m2" || m.Content != "done" {
			t.Fatalf("appended turn's last message: got %q %q; want m2 done", m.ID, m.Content)
		}
	}},
	{"TurnNotFound", func(t *testing.T, b Backend) {
		ctx := context.Background()
		saveAll(t, b, "s", "t1")
		_, err := b.Append(ctx, "s", "nope", appendMsgs(t, driver.Message{Role: driver.RoleUser, Content: "x"}))
		wantErr(t, err, driver.ErrTurnNotFound, "append to a turn the session lacks")
		_, err = b.Append(ctx, "none", "t1", appendMsgs(t, driver.Message{Role: driver.RoleUser, Content: "x"}))
		wantErr(t, err, driver.ErrTurnNotFound, "append to a session that does not exist")
		wantEmpty(t, b, "none")
		w := wantWindow(t, b, "s", 10, 1, "t1")
		if len(w.Turns[0].Messages) != 2 {
			t.Fatalf("turn after refused appends: got %d messages; want 2", len(w.Turns[0].Messages))
		}
	}},
}

// guarded is a turn that must land at position seq.
func guarded(id string, seq int) driver.Turn {
	tr := turn(id, "user "+id, "agent "+id)
	tr.Seq = seq
	return tr
}

var guardedChecks = []check{
	{"ExactPosition", func(t *testing.T, b Backend) {
		ctx := context.Background()
		if s := save(t, b, "s", guarded("t1", 1)); s.Seq != 1 {
			t.Fatalf("guarded save at 1: got Seq %d; want 1", s.Seq)
		}
		save(t, b, "s", guarded("t2", 2))
		v := version(t, b, "s")
		for _, seq := range []int{1, 2, 4, 100} {
			_, err := b.Save(ctx, "s", prepare(t, guarded("x"+strconv.Itoa(seq), seq)))
			wantErr(t, err, driver.ErrConflict, "guarded save at "+strconv.Itoa(seq)+" of a session of 2 turns")
		}
		wantWindow(t, b, "s", 10, 2, "t1", "t2")
		if got := version(t, b, "s"); got != v {
			t.Fatalf("version after conflicts: got %d; want %d (nothing written)", got, v)
		}
		_, err := b.Save(ctx, "new", prepare(t, guarded("t1", 2)))
		wantErr(t, err, driver.ErrConflict, "guarded save at 2 of a new session")
		wantEmpty(t, b, "new")
		if s := save(t, b, "s", guarded("t3", 3)); !s.Stored || s.Seq != 3 {
			t.Fatalf("guarded save at 3: got %+v; want Stored at Seq 3", s)
		}
	}},
	{"HeldIDNoConflict", func(t *testing.T, b Backend) {
		saveAll(t, b, "s", "t1", "t2")
		for _, seq := range []int{1, 2, 3, 9} {
			if s := save(t, b, "s", guarded("t1", seq)); s.Stored {
				t.Fatalf("guarded save of held turn t1 at %d: got %+v; want nothing stored and no error", seq, s)
			}
		}
		wantWindow(t, b, "s", 10, 2, "t1", "t2")
	}},
	{"LoadedSeq", func(t *testing.T, b Backend) {
		saveAll(t, b, "s", "t1", "t2", "t3", "t4", "t5")
		w, _ := load(t, b, "s", 2, 0)
		if got := seqs(w.Turns); !slices.Equal(got, []int{4, 5}) {
			t.Fatalf("window's Seq: got %v; want [4 5]", got)
		}
		// A loaded turn saved again, Seq and all, is the held turn: no
		// conflict, nothing stored.
		if s := save(t, b, "s", w.Turns[0]); s.Stored {
			t.Fatalf("save of a loaded turn: got %+v; want nothing stored", s)
		}
		if st, ok := b.(driver.SessionStore); ok {
			p, err := st.History(context.Background(), "s", driver.HistoryQuery{Limit: 10})
			noErr(t, err, "history")
			if got := seqs(p.Turns); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
				t.Fatalf("history's Seq: got %v; want [1 2 3 4 5]", got)
			}
		}
	}},
	{"ConcurrentOneWins", func(t *testing.T, b Backend) {
		// Two writers save at the same position at once, round after
		// round: exactly one wins each round, the other is a conflict.
		const rounds, writers = 8, 2
		for r := range rounds {
			var won, conflicts atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, writers)
			for w := range writers {
				p := prepare(t, guarded("r"+strconv.Itoa(r)+"w"+strconv.Itoa(w), r+1))
				wg.Go(func() {
					<-start
					_, err := b.Save(context.Background(), "s", p)
					switch {
					case err == nil:
						won.Add(1)
					case errors.Is(err, driver.ErrConflict):
						conflicts.Add(1)
					default:
						errs <- err
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("round %d: concurrent guarded save: %v", r, err)
			}
			if won.Load() != 1 || conflicts.Load() != writers-1 {
				t.Fatalf("round %d: %d saves won, %d conflicted; want exactly 1 and %d", r, won.Load(), conflicts.Load(), writers-1)
			}
			if w, _ := load(t, b, "s", 1, 0); w.TurnCount != r+1 {
				t.Fatalf("round %d: got %d turns; want %d", r, w.TurnCount, r+1)
			}
		}
	}},
}

var clearChecks = []check{
	{"Clear", func(t *testing.T, b Backend) {
		ctx := context.Background()
		saveAll(t, b, "s", "t1", "t2")
		saveAll(t, b, "other", "t1")
		noErr(t, b.ClearSession(ctx, "s"), "clear")
		wantEmpty(t, b, "s")
		_, err := b.SessionInfo(ctx, "s")
		wantErr(t, err, driver.ErrSessionNotFound, "session info after clear")
		wantWindow(t, b, "other", 10, 1, "t1")
		noErr(t, b.ClearSession(ctx, "s"), "clear of a cleared session")
		// The session starts over: its first turn is at 1 again, and an ID
		// it held before is new.
		if s := save(t, b, "s", guarded("t2", 1)); !s.Stored || s.Seq != 1 {
			t.Fatalf("save after clear: got %+v; want Stored at Seq 1", s)
		}
		wantWindow(t, b, "s", 10, 1, "t2")
	}},
	{"Replace", func(t *testing.T, b Backend) {
		r := replacer(t, b)
		ctx := context.Background()
		saveAll(t, b, "s", "t1", "t2", "t3")
		if st, ok := b.(driver.SessionStore); ok {
			noErr(t, st.CreateSession(ctx, "owned", driver.SessionInfo{User: "ada", Title: "kept"}), "create session")
			saveAll(t, b, "owned", "o1")
			_, err := r.Replace(ctx, "owned", []driver.PreparedTurn{prepare(t, turn("n1", "a", "b"))})
			noErr(t, err, "replace an owned session")
			if i := info(t, b, "owned"); i.User != "ada" || i.Title != "kept" || i.TurnCount != 1 {
				t.Fatalf("replaced session: got %+v; want owner ada, title kept, 1 turn", i)
			}
		}
		v := version(t, b, "s")
		_, err := r.Replace(ctx, "s", []driver.PreparedTurn{prepare(t, turn("n1", "a", "b")), prepare(t, turn("t1", "c", "d"))})
		noErr(t, err, "replace")
		w := wantWindow(t, b, "s", 10, 2, "n1", "t1")
		if w.Turns[1].User != "c" {
			t.Fatalf("replaced turn t1: got user %q; want the new %q", w.Turns[1].User, "c")
		}
		if version(t, b, "s") == v {
			t.Fatalf("replace kept the version %d", v)
		}
		// Bad input replaces nothing.
		_, err = r.Replace(ctx, "s", []driver.PreparedTurn{prepare(t, turn("z", "a", "b")), prepare(t, turn("z", "c", "d"))})
		wantErr(t, err, driver.ErrInvalidTurn, "replace with a turn id given twice")
		wantWindow(t, b, "s", 10, 2, "n1", "t1")
	}},
}

var coherenceChecks = []check{
	{"KnownVersion", func(t *testing.T, b Backend) {
		ctx := context.Background()
		_, v, err := b.Load(ctx, "s", driver.WindowQuery{MaxTurns: 10, Known: driver.NoSession})
		noErr(t, err, "load of a missing session")
		if v != driver.NoSession {
			t.Fatalf("version of a missing session: got %d; want driver.NoSession", v)
		}
		saveAll(t, b, "s", "t1", "t2")
		_, v = load(t, b, "s", 10, 0)
		w, got, err := b.Load(ctx, "s", driver.WindowQuery{MaxTurns: 10, Known: v})
		noErr(t, err, "load with the known version")
		if got != v || len(w.Turns) != 0 {
			t.Fatalf("load with the known version %d: got version %d and %d turns; want it and an empty window", v, got, len(w.Turns))
		}
		saveAll(t, b, "s", "t3")
		w, got, err = b.Load(ctx, "s", driver.WindowQuery{MaxTurns: 10, Known: v})
		noErr(t, err, "load with an old version")
		if got == v || len(w.Turns) != 3 {
			t.Fatalf("load with an old version %d: got version %d and %d turns; want a new version and 3 turns", v, got, len(w.Turns))
		}
	}},
	{"EveryWriteNewVersion", func(t *testing.T, b Backend) {
		ctx := context.Background()
		seen := map[driver.Version]string{driver.NoSession: "no session"}
		step := func(what string) {
			t.Helper()
			v := version(t, b, "s")
			if prev, ok := seen[v]; ok {
				t.Fatalf("after %s: version %d, the version after %s", what, v, prev)
			}
			seen[v] = what
		}
		saveAll(t, b, "s", "t1")
		step("the first save")
		saveAll(t, b, "s", "t2")
		step("a save")
		_, err := b.Append(ctx, "s", "t2", appendMsgs(t, driver.Message{Role: driver.RoleAssistant, Content: "more"}))
		noErr(t, err, "append")
		step("an append")
		if r, ok := b.(driver.Replacer); ok {
			_, err := r.Replace(ctx, "s", []driver.PreparedTurn{prepare(t, turn("r1", "a", "b"))})
			noErr(t, err, "replace")
			step("a replace")
		}
		if s, ok := b.(driver.SummaryStore); ok {
			noErr(t, s.PutSummary(ctx, "s", driver.Summary{Text: "sum", Turns: 1, UpdatedAt: time.Now()}), "put summary")
			step("a summary")
		}
		noErr(t, b.ClearSession(ctx, "s"), "clear")
		if v := version(t, b, "s"); v != driver.NoSession {
			t.Fatalf("version after clear: got %d; want driver.NoSession", v)
		}
		saveAll(t, b, "s", "t1")
		step("a save after clear")
	}},
}
