package conformance

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// Backend is the backend writer's interface, driver.Backend: what a
// memory needs of its storage. The subtests that check an optional
// interface (driver.SessionStore, driver.Replacer, driver.Forker,
// driver.SummaryStore) type-assert it.
type Backend = driver.Backend

// A check is one subtest of Run.
type check struct {
	name string
	run  func(t *testing.T, b Backend)
}

// groups are Run's subtests, by what they check.
var groups = []struct {
	name   string
	checks []check
}{
	{"Save", saveChecks},
	{"Window", windowChecks},
	{"Append", appendChecks},
	{"GuardedSave", guardedChecks},
	{"ClearReplace", clearChecks},
	{"Sessions", sessionChecks},
	{"Fork", forkChecks},
	{"Coherence", coherenceChecks},
}

// Run checks that a backend keeps the storage contract; newBackend returns
// a fresh, empty backend for each subtest. Every subtest is named
// Group/Check (Run(t, ...) then names them TestX/Fork/Depth, and so on),
// so that go test -run selects them, and newBackend may skip one by its
// t.Name().
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Helper()
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.checks {
				t.Run(c.name, func(t *testing.T) {
					b := newBackend(t)
					if b == nil {
						t.Fatal("newBackend returned nil")
					}
					c.run(t, b)
				})
			}
		})
	}
}

// The optional interfaces, or a skip naming the one missing.

func sessionStore(t *testing.T, b Backend) driver.SessionStore {
	t.Helper()
	s, ok := b.(driver.SessionStore)
	if !ok {
		t.Skipf("%T is not a driver.SessionStore: sessions, owners, search and history are not checked", b)
	}
	return s
}

func replacer(t *testing.T, b Backend) driver.Replacer {
	t.Helper()
	r, ok := b.(driver.Replacer)
	if !ok {
		t.Skipf("%T is not a driver.Replacer: Replace is not checked", b)
	}
	return r
}

func forker(t *testing.T, b Backend) driver.Forker {
	t.Helper()
	f, ok := b.(driver.Forker)
	if !ok {
		t.Skipf("%T is not a driver.Forker: forks are not checked", b)
	}
	return f
}

func summaryStore(t *testing.T, b Backend) driver.SummaryStore {
	t.Helper()
	s, ok := b.(driver.SummaryStore)
	if !ok {
		t.Skipf("%T is not a driver.SummaryStore: summaries are not checked", b)
	}
	return s
}

// Helpers: each fails the test on an error it does not expect.

// prepare is driver.Prepare of turn, as a memory does before a save.
func prepare(t *testing.T, turn driver.Turn) driver.PreparedTurn {
	t.Helper()
	p, err := driver.Prepare(turn, time.Now(), 0, nil)
	if err != nil {
		t.Fatalf("prepare turn %q: %v", turn.ID, err)
	}
	return p
}

// turn is a turn of a user and an assistant message.
func turn(id, user, agent string) driver.Turn {
	return driver.Turn{ID: id, User: user, Agent: agent}
}

// save stores turn in the session key and returns what Save reported.
func save(t *testing.T, b Backend, key string, turn driver.Turn) driver.Saved {
	t.Helper()
	s, err := b.Save(context.Background(), key, prepare(t, turn))
	if err != nil {
		t.Fatalf("save %s turn %q: %v", key, turn.ID, err)
	}
	return s
}

// saveAll stores a turn with each ID, in order, in the session key.
func saveAll(t *testing.T, b Backend, key string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		save(t, b, key, turn(id, "user says "+id, "agent answers "+id))
	}
}

// load returns the session's window of at most maxTurns turns within
// budget (0: none) and its version.
func load(t *testing.T, b Backend, key string, maxTurns, budget int) (driver.Window, driver.Version) {
	t.Helper()
	w, v, err := b.Load(context.Background(), key, driver.WindowQuery{MaxTurns: maxTurns, TokenBudget: budget, Known: driver.UnknownVersion})
	if err != nil {
		t.Fatalf("load %s: %v", key, err)
	}
	return w, v
}

// version returns the session's version.
func version(t *testing.T, b Backend, key string) driver.Version {
	t.Helper()
	_, v := load(t, b, key, 1, 0)
	return v
}

// ids are the turns' IDs, in order.
func ids(turns []driver.Turn) []string {
	out := make([]string, len(turns))
	for i := range turns {
		out[i] = turns[i].ID
	}
	return out
}

// seqs are the turns' Seq, in order.
func seqs(turns []driver.Turn) []int {
	out := make([]int, len(turns))
	for i := range turns {
		out[i] = turns[i].Seq
	}
	return out
}

// wantWindow checks that the session's window of at most maxTurns turns
// holds the turns want, by ID, oldest first, and that it holds count turns.
func wantWindow(t *testing.T, b Backend, key string, maxTurns, count int, want ...string) driver.Window {
	t.Helper()
	w, _ := load(t, b, key, maxTurns, 0)
	if got := ids(w.Turns); !slices.Equal(got, want) {
		t.Fatalf("window of %s (max %d turns): got turns %q; want %q", key, maxTurns, got, want)
	}
	if w.TurnCount != count {
		t.Fatalf("window of %s: got TurnCount %d; want %d", key, w.TurnCount, count)
	}
	return w
}

// wantErr checks that err wraps target.
func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v; want one wrapping %v", what, err, target)
	}
}

// noErr fails the test on err.
func noErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantEmpty checks that the session does not exist: an empty window at
// version driver.NoSession.
func wantEmpty(t *testing.T, b Backend, key string) {
	t.Helper()
	w, v := load(t, b, key, 10, 0)
	if len(w.Turns) != 0 || w.TurnCount != 0 || v != driver.NoSession {
		t.Fatalf("load %s: got %d turns (count %d) at version %d; want none at driver.NoSession", key, len(w.Turns), w.TurnCount, v)
	}
}

// search returns the tenant's hits for text in q's scope.
func search(t *testing.T, s driver.SessionStore, tenant string, q driver.SearchQuery) []driver.SearchHit {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 20
	}
	hits, err := s.Search(context.Background(), tenant, q)
	if err != nil {
		t.Fatalf("search %q in tenant %q: %v", q.Text, tenant, err)
	}
	return hits
}

// hitSessions are the session IDs of hits, sorted.
func hitSessions(hits []driver.SearchHit) []string {
	out := make([]string, len(hits))
	for i := range hits {
		out[i] = hits[i].SessionID
	}
	slices.Sort(out)
	return out
}

// info returns the session's SessionInfo.
func info(t *testing.T, b Backend, key string) driver.SessionInfo {
	t.Helper()
	i, err := b.SessionInfo(context.Background(), key)
	if err != nil {
		t.Fatalf("session info %s: %v", key, err)
	}
	return i
}
