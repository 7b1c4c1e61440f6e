package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// envCrashSeed replays the kill schedule of a logged crash run.
const envCrashSeed = "TURNKEEP_CRASH_SEED"

// TestCrashSafety kills a saver process with SIGKILL at random moments,
// trial after trial on one database, and then checks that every turn it
// acknowledged is stored exactly once, that no turn is half stored, and that
// each session's turn count equals the turns it holds.
//
// Each trial after the first also re-sends the last turn acknowledged so far
// (a client that did not see the acknowledgement) and resumes with the turn
// after it, which the killed process may or may not have stored: both must
// be stored once. The only turns stored without an acknowledgement may be
// those in flight at a kill, one per trial at most.
func TestCrashSafety(t *testing.T) {
	const (
		trials             = 24
		minDelay, maxDelay = 10 * time.Millisecond, 300 * time.Millisecond
		session, prefix    = "crash", "c-"
	)
	bin := saverBinary(t)
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		maxDelay := maxDelay
		if d.Name == "mysql" {
			// MySQL's migration lock is a lease (Galera has no GET_LOCK):
			// a saver killed while it makes the schema holds it until it
			// expires (sqlcore.LockLease, 30 s), so every trial would end
			// before its first save. The schema is made first; the kills
			// fall on saves. A saver's start (its schema checks read
			// information_schema) takes about 200 ms here, so the kills
			// come up to a second in.
			openRaw(t, url)
			maxDelay = time.Second
		}
		seed := uint64(time.Now().UnixNano())
		if s := os.Getenv(envCrashSeed); s != "" {
			var err error
			if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
				t.Fatalf("%s: %v", envCrashSeed, err)
			}
		}
		t.Logf("seed %d (replay with %s=%d)", seed, envCrashSeed, seed)
		rng := rand.New(rand.NewPCG(seed, 0))

		acked := map[string]bool{}
		allowed := map[string]bool{} // acknowledged, or in flight at a kill
		next, lastAcked := 0, ""
		var killedBeforeAck, acksTotal int
		start := time.Now()
		for trial := range trials {
			args := []string{"-db", url, "-session", session, "-prefix", prefix,
				"-start", strconv.Itoa(next), "-n", "1000000", "-mode", []string{"save", "saveload"}[trial%2]}
			if lastAcked != "" {
				args = append(args, "-resend", lastAcked)
			}
			delay := minDelay + time.Duration(rng.Int64N(int64(maxDelay-minDelay)))
			p := startSaver(t, bin, false, args...)
			time.Sleep(delay)
			p.kill()
			r := p.wait()
			if !r.killed || len(r.errors) > 0 || r.done {
				t.Errorf("trial %d: the saver was not killed mid-loop: %s", trial, r)
			}
			acksTotal += len(r.acks)
			allowed[fmt.Sprintf("%s%06d", prefix, next)] = true // in flight if nothing was acknowledged
			for _, id := range r.acks {
				acked[id], allowed[id] = true, true
				n, err := strconv.Atoi(strings.TrimPrefix(id, prefix))
				if err != nil {
					t.Fatalf("trial %d: ack of unexpected ID %q", trial, id)
				}
				if n >= next {
					next = n + 1
				}
				lastAcked = id
			}
			allowed[fmt.Sprintf("%s%06d", prefix, next)] = true // in flight at the kill
			if len(r.acks) == 0 {
				killedBeforeAck++
			}
			t.Logf("trial %2d: killed after %3dms, %4d acks (partial line %q)", trial, delay.Milliseconds(), len(r.acks), r.partial)
		}

		s := readStore(t, url)
		s.requireTurns(t, session, sortedKeys(acked))
		unacked := 0
		for id := range s.turns[session] {
			switch {
			case !allowed[id]:
				t.Errorf("turn %q is stored but was neither acknowledged nor in flight at a kill", id)
			case !acked[id]:
				unacked++
			}
		}
		if len(s.turns) != 1 {
			t.Errorf("sessions stored: %d; want 1", len(s.turns))
		}
		if len(acked) == 0 {
			t.Errorf("no turn was acknowledged in %d trials: the test proved nothing", trials)
		}

		// The library, opened afresh, agrees with the tables.
		m := newMemory(t, url)
		w, err := m.LoadContext(context.Background(), session)
		if err != nil {
			t.Fatalf("LoadContext: %v", err)
		}
		if w.TurnCount != len(s.turns[session]) {
			t.Errorf("LoadContext TurnCount = %d; %d turns stored", w.TurnCount, len(s.turns[session]))
		}
		for i, turn := range w.Turns {
			if seq := s.turns[session][turn.ID]; seq != int64(w.TurnCount-len(w.Turns)+i+1) {
				t.Errorf("window turn %d is %q at seq %d; want seq %d", i, turn.ID, seq, w.TurnCount-len(w.Turns)+i+1)
			}
		}
		t.Logf("%d trials in %v (%d killed before their first ack): %d acks, %d distinct turns acknowledged, %d stored (%d of them in flight at a kill, unacknowledged)",
			trials, time.Since(start).Round(time.Millisecond), killedBeforeAck, acksTotal, len(acked), len(s.turns[session]), unacked)
	})
}

// TestIdempotentRetry saves turns again under the IDs they were stored
// with, as a client retrying after a lost acknowledgement does: in the same
// process with a warm cache, after a restart (cold cache), after the turn
// left the window, with other content, from 8 goroutines with memories of
// their own, and from two processes at once. Every turn is stored once.
func TestIdempotentRetry(t *testing.T) {
	bin := saverBinary(t)
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := d.URL(t)
		db := openDB(t, url)
		m := memoryOn(t, db, memory.WithMaxTurns(2))

		t.Run("same process", func(t *testing.T) {
			for range 3 {
				saveTurn(t, m, "same", idTurn("x"))
			}
			wantWindow(t, m, "same", 1, "x")
		})
		t.Run("restart", func(t *testing.T) {
			saveTurn(t, m, "restart", idTurn("x"))
			saveTurn(t, m, "restart", idTurn("y"))
			// A new backend and memory on a new DB handle: nothing cached.
			m2 := newMemory(t, url, memory.WithMaxTurns(2))
			saveTurn(t, m2, "restart", idTurn("y"))
			saveTurn(t, m2, "restart", idTurn("x"))
			wantWindow(t, m2, "restart", 2, "x", "y")
			wantWindow(t, m, "restart", 2, "x", "y")
		})
		t.Run("outside the window", func(t *testing.T) {
			for _, id := range []string{"a", "b", "c"} {
				saveTurn(t, m, "old", idTurn(id))
			}
			wantWindow(t, m, "old", 3, "b", "c") // caches the window
			saveTurn(t, m, "old", idTurn("a"))   // older than the window
			wantWindow(t, m, "old", 3, "b", "c")
			saveTurn(t, m, "old", idTurn("d"))
			wantWindow(t, m, "old", 4, "c", "d")
		})
		t.Run("other content", func(t *testing.T) {
			saveTurn(t, m, "content", idTurn("k"))
			saveTurn(t, m, "content", memory.Turn{ID: "k", User: "changed", Agent: "changed"})
			w := wantWindow(t, m, "content", 1, "k")
			if w.Turns[0].User != "u:k" {
				t.Errorf("user message = %q; want the first save's %q", w.Turns[0].User, "u:k")
			}
		})
		t.Run("concurrent goroutines", func(t *testing.T) {
			const workers, turns = 8, 20
			var wg sync.WaitGroup
			for range workers {
				mw := memoryOn(t, db) // a cache of its own, like another process
				wg.Go(func() {
					for i := range turns {
						if err := mw.SaveTurn(ctx, "goroutines", idTurn(fmt.Sprintf("g%02d", i))); err != nil {
							t.Errorf("SaveTurn: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			wantWindow(t, newMemory(t, url, memory.WithMaxTurns(2)), "goroutines", turns, "g18", "g19")
		})
		t.Run("process restart", func(t *testing.T) {
			args := []string{"-db", url, "-session", "procs", "-prefix", "p-", "-n", "5"}
			first := startSaver(t, bin, false, args...).wait()
			// All five again, the last acknowledged one first.
			second := startSaver(t, bin, false, append(args, "-resend", "p-000004")...).wait()
			for _, r := range []saverResult{first, second} {
				if !r.ok() {
					t.Errorf("saver: %s", r)
				}
			}
			if len(first.acks) != 5 || len(second.acks) != 6 {
				t.Errorf("acks: %d then %d; want 5 then 6", len(first.acks), len(second.acks))
			}
			wantWindow(t, newMemory(t, url, memory.WithMaxTurns(2)), "procs", 5, "p-000003", "p-000004")
		})
		t.Run("concurrent processes", func(t *testing.T) {
			const turns = 50
			args := []string{"-db", url, "-session", "dup", "-prefix", "d-", "-n", strconv.Itoa(turns)}
			res := runSavers(t, bin, [][]string{args, args})
			for i, r := range res {
				if !r.ok() || len(r.acks) != turns {
					t.Errorf("saver %d: %d acks; want %d; %s", i, len(r.acks), turns, r)
				}
			}
			wantWindow(t, newMemory(t, url, memory.WithMaxTurns(2)), "dup", turns, "d-000048", "d-000049")
		})

		s := readStore(t, url)
		for session, want := range map[string]int{"same": 1, "restart": 2, "old": 4, "content": 1, "goroutines": 20, "procs": 5, "dup": 50} {
			if got := len(s.turns[session]); got != want {
				t.Errorf("session %q: %d turns stored; want %d", session, got, want)
			}
		}
	})
}

// openDB opens url through the library and closes it at cleanup.
func openDB(t testing.TB, url string, opts ...dataflow.Option) *dataflow.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := dataflow.Open(ctx, url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// memoryOn returns a PersistentBufferMemory over a new DataFlowBackend on db.
func memoryOn(t testing.TB, db *dataflow.DB, opts ...memory.Option) *memory.PersistentBufferMemory {
	t.Helper()
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		t.Fatalf("NewDataFlowBackend: %v", err)
	}
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	if err != nil {
		t.Fatalf("NewPersistentBufferMemory: %v", err)
	}
	return m
}

// newMemory opens url afresh, as a restarted process would.
func newMemory(t testing.TB, url string, opts ...memory.Option) *memory.PersistentBufferMemory {
	t.Helper()
	return memoryOn(t, openDB(t, url), opts...)
}

func saveTurn(t testing.TB, m memory.Memory, session string, turn memory.Turn) {
	t.Helper()
	if err := m.SaveTurn(context.Background(), session, turn); err != nil {
		t.Fatalf("SaveTurn(%q, %q): %v", session, turn.ID, err)
	}
}

// wantWindow loads the session and fails unless it holds count turns and a
// window of exactly ids, oldest first.
func wantWindow(t testing.TB, m memory.Memory, session string, count int, ids ...string) memory.Window {
	t.Helper()
	w, err := m.LoadContext(context.Background(), session)
	if err != nil {
		t.Fatalf("LoadContext(%q): %v", session, err)
	}
	got := make([]string, len(w.Turns))
	for i, turn := range w.Turns {
		got[i] = turn.ID
	}
	if w.TurnCount != count || strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("session %q: TurnCount %d, window %q; want %d, %q", session, w.TurnCount, got, count, ids)
	}
	return w
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// waitMySQLIdle waits until no other connection to url's database is
// running a statement. A killed saver's last text, or the text of a save
// whose context ended (the driver's KILL QUERY can come after its
// COMMIT), runs on in the server after the client gave up, and may commit
// (it was in flight, so either outcome is allowed); readStore reads the
// tables once it is done, so that the messages, the session row and
// LoadContext all see the same outcome.
func waitMySQLIdle(t testing.TB, url string) {
	t.Helper()
	db, _ := openChecker(t, url)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy int
		err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST
WHERE ID <> CONNECTION_ID() AND DB = DATABASE() AND COMMAND <> 'Sleep'`).Scan(&busy)
		if err != nil {
			t.Fatalf("read the process list: %v", err)
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("%d connections still busy after 10s; reading the tables anyway", busy)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
