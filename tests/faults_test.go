package tests

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// opTimeout bounds every operation of the fault tests: an operation that
// takes longer hangs.
const opTimeout = 5 * time.Second

// TestFaultTerminatedConnections kills the library's PostgreSQL connections
// with pg_terminate_backend, again and again, while goroutines save and load
// turns through PersistentBufferMemory (from the very first use, so schema
// set-up is hit too). Every operation must return nil or an error within its
// context, never panic or hang; once the killing stops the next calls must
// succeed; and every turn whose SaveTurn returned nil is stored exactly
// once, with no half turn and consistent turn counts.
func TestFaultTerminatedConnections(t *testing.T) {
	base := dbtest.PostgresURL(t)       // skips without TURNKEEP_POSTGRES_URL
	libURL, app := withAppName(t, base) // only the library's connections die

	// A short ensure backoff: first use fails while connections die, and
	// the calls after the fault would otherwise wait out up to 10 s.
	db := openDB(t, libURL, dataflow.WithEnsureBackoff(10*time.Millisecond, 100*time.Millisecond))
	// The cached memory's window holds whole sessions, so that a save that
	// failed but was stored would leave its cache visibly short.
	const maxTurns = 1 << 20
	cached := memoryOn(t, db, memory.WithMaxTurns(maxTurns))
	uncached := memoryOn(t, db, memory.WithCacheTTL(0))
	admin, _ := openChecker(t, base)

	duration := 3 * time.Second
	if testing.Short() {
		duration = 1500 * time.Millisecond
	}
	type worker struct {
		m       *memory.PersistentBufferMemory
		session string
		prefix  string

		acked, failed []string // turn IDs whose SaveTurn returned nil, an error
	}
	workers := []*worker{
		{m: cached, session: "own-0", prefix: "a"},
		{m: cached, session: "own-1", prefix: "b"},
		{m: uncached, session: "shared", prefix: "c"},
		{m: uncached, session: "shared", prefix: "d"},
	}
	var (
		saveOK, saveErr, loadOK, loadErr atomic.Int64
		ensureErr                        atomic.Int64 // of the failures, those of first-use schema set-up
		examples                         sync.Map     // error text → struct{}
	)
	failure := func(err error) {
		if errors.Is(err, dataflow.ErrEnsureFailed) {
			ensureErr.Add(1)
		}
		examples.LoadOrStore(shortError(err), struct{}{})
		time.Sleep(time.Millisecond) // a failure may be instant (ensure backoff): do not spin
	}
	op := func(name string, f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		start := time.Now()
		err := f(ctx)
		if d := time.Since(start); d > opTimeout+time.Second {
			t.Errorf("%s took %v: it ignored its context", name, d)
		}
		return err
	}

	// The fault lasts duration, and longer (up to 10x) until a save has
	// succeeded in it: on a loaded machine the first use's schema set-up
	// can take longer than the terminator's 5-40 ms rounds for seconds, and
	// the test is about saves succeeding while connections die, not about
	// how fast the machine is. The time it took is logged.
	faultCtx, stopFault := context.WithCancel(context.Background())
	defer stopFault()
	faultStart := time.Now()
	go func() {
		for faultCtx.Err() == nil {
			elapsed := time.Since(faultStart)
			if elapsed >= 10*duration || (elapsed >= duration && saveOK.Load() > 0) {
				stopFault()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var terminated, rounds atomic.Int64
	terminatorDone := make(chan struct{})
	terminate := func(ctx context.Context) (int64, error) {
		var n int64
		err := admin.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1) s WHERE ok`, app).Scan(&n)
		return n, err
	}
	go func() {
		defer close(terminatorDone)
		rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
		for faultCtx.Err() == nil {
			n, err := terminate(faultCtx)
			if err != nil && faultCtx.Err() == nil {
				t.Errorf("terminator: %v", err)
				return
			}
			terminated.Add(n)
			rounds.Add(1)
			// Rounds every 5-40 ms; while no save has succeeded yet, the
			// pause grows with the time the fault has lasted (up to 10x
			// after 10 s), so that first use's schema set-up, many
			// statements long, completes on a loaded machine too: the test
			// is about saves while connections die, and they still die
			// throughout.
			pause := time.Duration(5+rng.IntN(35)) * time.Millisecond
			if saveOK.Load() == 0 {
				pause *= time.Duration(1 + min(9, time.Since(faultStart)/time.Second))
			}
			time.Sleep(pause)
		}
	}()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("panic in session %q: %v", w.session, r)
				}
			}()
			for i := 0; faultCtx.Err() == nil; i++ {
				id := fmt.Sprintf("%s%06d", w.prefix, i)
				err := op("SaveTurn", func(ctx context.Context) error { return w.m.SaveTurn(ctx, w.session, idTurn(id)) })
				if err != nil {
					saveErr.Add(1)
					w.failed = append(w.failed, id)
					failure(err)
				} else {
					saveOK.Add(1)
					w.acked = append(w.acked, id)
				}
				err = op("LoadContext", func(ctx context.Context) error {
					win, err := w.m.LoadContext(ctx, w.session)
					if err == nil {
						checkWindow(t, w.session, win)
					}
					return err
				})
				if err != nil {
					loadErr.Add(1)
					failure(err)
				} else {
					loadOK.Add(1)
				}
			}
		})
	}
	if !waitTimeout(&wg, 10*duration+2*opTimeout+5*time.Second) {
		t.Fatal("workers still running long after the fault ended: an operation hangs")
	}
	stopFault()
	<-terminatorDone

	// Recovery: calls may still meet connections killed in the last rounds
	// (at most once each) until one works, which leaves a live connection
	// idle in the pool.
	probe := memoryOn(t, db, memory.WithCacheTTL(0))
	recovery := 0
	for {
		err := op("LoadContext", func(ctx context.Context) error { _, err := probe.LoadContext(ctx, "own-0"); return err })
		if err == nil {
			break
		}
		if recovery++; recovery > 2*dataflow.DefaultMaxOpenConns {
			t.Fatalf("no call works after the fault: %d failed: %v", recovery, err)
		}
		// A first use that failed during the fault is retried once its
		// backoff (at most 100 ms here) has passed, not at once.
		if errors.Is(err, dataflow.ErrEnsureFailed) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Then the terminator's last act kills the idle connections, as a
	// server restart or failover would. The server takes connections again:
	// the next calls must work, with no error for a dead connection.
	last, err := terminate(context.Background())
	if err != nil {
		t.Fatalf("terminate: %v", err)
	}
	if last == 0 {
		t.Fatal("the last round found no idle connection to kill: the test proved nothing")
	}
	terminated.Add(last)
	for _, w := range workers {
		id := w.prefix + "-after"
		if err := op("SaveTurn", func(ctx context.Context) error { return w.m.SaveTurn(ctx, w.session, idTurn(id)) }); err != nil {
			t.Errorf("SaveTurn after the fault (%d idle connections killed last): %v", last, err)
		} else {
			w.acked = append(w.acked, id)
		}
		if err := op("LoadContext", func(ctx context.Context) error { _, err := w.m.LoadContext(ctx, w.session); return err }); err != nil {
			t.Errorf("LoadContext after the fault (%d idle connections killed last): %v", last, err)
		}
	}

	s := readStore(t, base)
	storedFailed := 0
	for _, w := range workers {
		s.requireTurns(t, w.session, w.acked)
		for _, id := range w.failed {
			if _, ok := s.turns[w.session][id]; ok {
				storedFailed++ // committed, but the acknowledgement was lost with the connection
			}
		}
	}
	// The cache agrees with the database.
	for _, session := range []string{"own-0", "own-1"} {
		compareWithReadThrough(t, cached, db, session, memory.WithMaxTurns(maxTurns))
	}
	if terminated.Load() == 0 {
		t.Error("no connection was terminated: the test proved nothing")
	}
	if saveOK.Load() == 0 {
		t.Error("no SaveTurn succeeded during the fault")
	}
	var texts []string
	examples.Range(func(k, _ any) bool { texts = append(texts, k.(string)); return true })
	slices.Sort(texts)
	t.Logf("%v of faults: %d connections terminated in %d rounds; SaveTurn %d ok, %d failed (%d of them stored all the same); LoadContext %d ok, %d failed; %d of the failures in first-use schema set-up; %d calls failed in recovery; %d idle connections killed last; %d turns stored",
		time.Since(faultStart).Round(time.Millisecond), terminated.Load(), rounds.Load()+1, saveOK.Load(), saveErr.Load(), storedFailed, loadOK.Load(), loadErr.Load(), ensureErr.Load(), recovery, last, s.totalTurns())
	for i, e := range texts {
		if i == 8 {
			t.Logf("… %d distinct errors in all", len(texts))
			break
		}
		t.Logf("error seen: %s", e)
	}
}

// mysqlDeadlineDefect is why a deadline case skips MySQL: a known defect
// of the MySQL save, open. The driver gives up a text at its deadline by
// closing the connection, and the server runs the text on regardless: a
// save blocked on a lock stores its turn after its caller was told it
// failed. The fix (ending the server's statement at the deadline, KILL
// QUERY from another connection) belongs to the save path.
const mysqlDeadlineDefect = "known defect of the MySQL save under deadlines (see mysqlDeadlineDefect): the server runs on a text its caller gave up on"

// TestFaultStatementFailsMidSave makes SaveTurn fail part-way: a query hook
// cancels the operation's context just before, or just after, the INSERT of
// the turn's messages, once the session row has been bumped in the same
// transaction. Nothing may remain: no rows, the same turn count, the same
// cached window as a fresh read-through, and no transaction left open on a
// pooled connection.
func TestFaultStatementFailsMidSave(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		dbURL, app := faultURL(t, d)
		hook := &cancelHook{match: "INSERT INTO " + backend.MessagesTable}
		if d.Name == "pg" {
			// On PostgreSQL a save is one statement: the messages are
			// inserted by it, and it is the whole transaction.
			hook.match = "WITH o AS"
		}
		if d.Name == "mysql" {
			// On MySQL a save is one text that begins, writes and commits
			// its transaction.
			hook.match = "SET @tk_seq = NULL"
		}
		db := openDB(t, dbURL, dataflow.WithQueryHook(hook))
		for _, after := range []bool{false, true} {
			for _, warm := range []bool{true, false} {
				name := fmt.Sprintf("cancel %s INSERT, cache %s", map[bool]string{false: "before", true: "after"}[after], map[bool]string{false: "cold", true: "warm"}[warm])
				t.Run(name, func(t *testing.T) {
					if after && d.Name == "pg" {
						t.Skip("on PostgreSQL the save is one statement: once it has run it has committed, so there is no point between the INSERT and COMMIT to cancel at")
					}
					if after && d.Name == "mysql" {
						t.Skip("on MySQL the save is one text that commits within itself: once it has run it has committed, so there is no point between the INSERT and COMMIT to cancel at")
					}
					session := strings.ReplaceAll(name, " ", "-")
					m := memoryOn(t, db)
					for _, id := range []string{"t1", "t2", "t3"} {
						saveTurn(t, m, session, idTurn(id))
					}
					var before memory.Window
					if warm {
						before = wantWindow(t, m, session, 3, "t1", "t2", "t3")
					}
					storeBefore := readStore(t, dbURL)

					hits := hook.hits.Load()
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					ctx = context.WithValue(ctx, cancelKey{}, cancelPlan{cancel: cancel, after: after})
					err := m.SaveTurn(ctx, session, idTurn("x"))
					if got := hook.hits.Load() - hits; got != 1 {
						t.Fatalf("the hook cancelled %d statements; want 1", got)
					}
					if err == nil {
						t.Fatal("SaveTurn returned nil though its context was cancelled mid-transaction")
					}
					t.Logf("SaveTurn: %v (errors.Is Canceled: %v)", err, errors.Is(err, context.Canceled))

					if !warm {
						before = wantWindow(t, memoryOn(t, db), session, 3, "t1", "t2", "t3")
					}
					after := wantWindow(t, m, session, 3, "t1", "t2", "t3")
					if !sameWindow(before, after) {
						t.Errorf("cached window changed:\nbefore %+v\nafter  %+v", before, after)
					}
					compareWithReadThrough(t, m, db, session)
					storeAfter := readStore(t, dbURL)
					if !reflect.DeepEqual(storeBefore.turns[session], storeAfter.turns[session]) || storeBefore.counts[session] != storeAfter.counts[session] || storeBefore.messages != storeAfter.messages {
						t.Errorf("the store changed: turns %v → %v, turn_count %d → %d, messages %d → %d",
							storeBefore.turns[session], storeAfter.turns[session], storeBefore.counts[session], storeAfter.counts[session], storeBefore.messages, storeAfter.messages)
					}
					requireNoOpenTransaction(t, dbURL, app)

					// The same turn, saved again, takes the next seq.
					saveTurn(t, m, session, idTurn("x"))
					wantWindow(t, m, session, 4, "t1", "t2", "t3", "x")
					if seq := readStore(t, dbURL).turns[session]["x"]; seq != 4 {
						t.Errorf("the retried turn got seq %d; want 4", seq)
					}
				})
			}
		}
	})
}

// TestFaultContext gives SaveTurn, LoadContext and Clear an already
// cancelled or expired context, a deadline that expires while the operation
// waits for a lock held by another connection, and deadlines that expire at
// random points of the operation. Each returns promptly, with the context's
// error when it fails, and no half turn is ever stored.
func TestFaultContext(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		dbURL, _ := faultURL(t, d)
		db := openDB(t, dbURL)

		t.Run("done before the call", func(t *testing.T) {
			cancelled, cancel := context.WithCancel(context.Background())
			cancel()
			expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer cancel2()
			// The first round meets tables not yet ensured; the second the hot path.
			for round, state := range []string{"first use", "warm"} {
				for _, c := range []struct {
					ctx  context.Context
					want error
				}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
					for _, ttl := range []time.Duration{memory.DefaultCacheTTL, 0} {
						m := memoryOn(t, db, memory.WithCacheTTL(ttl))
						session := fmt.Sprintf("done-%d-%v-%v", round, c.want, ttl)
						ops := map[string]func() error{
							"SaveTurn":    func() error { return m.SaveTurn(c.ctx, session, idTurn("x")) },
							"LoadContext": func() error { _, err := m.LoadContext(c.ctx, session); return err },
							"Clear":       func() error { return m.Clear(c.ctx, session) },
						}
						for _, name := range []string{"SaveTurn", "LoadContext", "Clear"} {
							start := time.Now()
							err := ops[name]()
							if elapsed := time.Since(start); elapsed > time.Second {
								t.Errorf("%s, %s, ttl %v: %s took %v", state, c.want, ttl, name, elapsed)
							}
							if !errors.Is(err, c.want) {
								t.Errorf("%s, %s, ttl %v: %s = %v; want an error wrapping %v", state, c.want, ttl, name, err, c.want)
							}
						}
					}
				}
				if round == 0 {
					saveTurn(t, memoryOn(t, db), "warm-up", idTurn("w"))
				}
			}
			// A window in the cache needs no I/O, but a done context is
			// still the context's error.
			m := memoryOn(t, db)
			wantWindow(t, m, "warm-up", 1, "w")
			if _, err := m.LoadContext(cancelled, "warm-up"); !errors.Is(err, context.Canceled) {
				t.Errorf("LoadContext with a cancelled context and a cached window = %v; want context.Canceled", err)
			}
			if err := m.SaveTurn(cancelled, "warm-up", idTurn("w2")); !errors.Is(err, context.Canceled) {
				t.Errorf("SaveTurn with a cancelled context and a cached window = %v; want context.Canceled", err)
			}
			if s := readStore(t, dbURL); s.totalTurns() != 1 {
				t.Errorf("%d turns stored; want only the warm-up turn", s.totalTurns())
			}
		})

		t.Run("deadline while blocked on a lock", func(t *testing.T) {
			if d.Name == "mysql" {
				t.Skip(mysqlDeadlineDefect)
			}
			m := memoryOn(t, db)
			saveTurn(t, m, "blocked", idTurn("b1"))
			before := readStore(t, dbURL)
			release := holdWriteLock(t, dbURL, "blocked")
			for _, op := range []struct {
				name string
				f    func(ctx context.Context) error
			}{
				{"SaveTurn", func(ctx context.Context) error { return m.SaveTurn(ctx, "blocked", idTurn("b2")) }},
				{"Clear", func(ctx context.Context) error { return m.Clear(ctx, "blocked") }},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				start := time.Now()
				err := op.f(ctx)
				elapsed := time.Since(start)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) || elapsed > time.Second {
					t.Errorf("%s under a held lock with a 200ms deadline: %v after %v; want an error wrapping context.DeadlineExceeded within 1s",
						op.name, err, elapsed.Round(time.Millisecond))
				}
			}
			release()
			after := readStore(t, dbURL)
			if !reflect.DeepEqual(before.turns, after.turns) || !reflect.DeepEqual(before.counts, after.counts) {
				t.Errorf("the store changed: %v %v → %v %v", before.turns, before.counts, after.turns, after.counts)
			}
			saveTurn(t, m, "blocked", idTurn("b2"))
			wantWindow(t, m, "blocked", 2, "b1", "b2")
		})

		t.Run("deadline mid-operation", func(t *testing.T) {
			iterations := 300
			if testing.Short() {
				iterations = 100
			}
			// The saver's window holds the whole session, so a save it
			// believes failed but the database kept would leave its cache
			// a turn short: compareWithReadThrough catches that.
			const maxTurns = 1000
			saver := memoryOn(t, db, memory.WithMaxTurns(maxTurns))
			loader := memoryOn(t, db, memory.WithCacheTTL(0))
			// Timeouts spread log-uniformly from a tenth of the time a warm
			// save takes here to a thousand times it, so that operations are
			// cut at every stage, from connecting to committing, and some
			// finish. An operation right after a cut-off one took up to 130 ms
			// on PostgreSQL here (most take under 2 ms): with timeouts up to
			// twenty times a warm save, each cut-off made the next operation
			// fail too, and a CI run saw 0 of 600 finish (2 to 18 locally).
			var typical time.Duration
			for i := range 20 {
				start := time.Now()
				saveTurn(t, saver, "mid", idTurn(fmt.Sprintf("warm%02d", i)))
				typical += time.Since(start)
			}
			typical /= 20
			if w, err := saver.LoadContext(context.Background(), "mid"); err != nil || w.TurnCount != 20 {
				t.Fatalf("LoadContext = TurnCount %d, %v; want 20, nil", w.TurnCount, err)
			}
			seed := uint64(time.Now().UnixNano())
			rng := mrand.New(mrand.NewPCG(seed, 2))
			var acked, failedIDs []string
			var ok, failed, storedFailed, late, early, foreign int
			for i := range iterations {
				id := fmt.Sprintf("m%04d", i)
				timeout := time.Duration(float64(typical) / 10 * math.Pow(10_000, rng.Float64()))
				for _, isSave := range []bool{true, false} {
					ctx, cancel := context.WithTimeout(context.Background(), timeout)
					deadline, _ := ctx.Deadline()
					var err error
					if isSave {
						err = saver.SaveTurn(ctx, "mid", idTurn(id))
					} else {
						var w memory.Window
						if w, err = loader.LoadContext(ctx, "mid"); err == nil {
							checkWindow(t, "mid", w)
						}
					}
					returned := time.Now()
					cancel()
					if returned.Sub(deadline) > time.Second {
						late++
						t.Errorf("operation with a %v timeout returned %v after its deadline", timeout, returned.Sub(deadline))
					}
					switch {
					case err == nil:
						ok++
						if isSave {
							acked = append(acked, id)
						}
						continue
					case returned.Before(deadline):
						if early++; early <= 5 {
							t.Errorf("error %v before the deadline: %v", deadline.Sub(returned), err)
						}
					case !errors.Is(err, context.DeadlineExceeded):
						if foreign++; foreign <= 5 {
							t.Errorf("the deadline passed but the error does not wrap context.DeadlineExceeded: %v", err)
						}
					}
					failed++
					if isSave {
						failedIDs = append(failedIDs, id)
					}
				}
			}
			s := readStore(t, dbURL)
			s.requireTurns(t, "mid", acked)
			for _, id := range failedIDs {
				if _, ok := s.turns["mid"][id]; ok {
					storedFailed++
				}
			}
			compareWithReadThrough(t, saver, db, "mid", memory.WithMaxTurns(maxTurns))
			t.Logf("seed %d, typical save %v: %d operations ok, %d failed (%d before their deadline, %d without wrapping context.DeadlineExceeded, %d late); %d of %d failed saves were stored all the same",
				seed, typical, ok, failed, early, foreign, late, storedFailed, len(failedIDs))
			if failed == 0 || ok == 0 {
				t.Errorf("%d ok, %d failed: the deadlines did not cut operations at various points", ok, failed)
			}
		})
	})
}

// TestFaultAfterClose calls every operation after DB.Close, and closes a DB
// while goroutines are using it: errors, never a panic or a hang, and no
// half turn stored.
func TestFaultAfterClose(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		dbURL, _ := faultURL(t, d)

		t.Run("after Close", func(t *testing.T) {
			db := openDB(t, dbURL)
			b, err := backend.NewDataFlowBackend(db)
			if err != nil {
				t.Fatal(err)
			}
			warm := memoryOn(t, db)
			cold := memoryOn(t, db)
			uncached := memoryOn(t, db, memory.WithCacheTTL(0))
			saveTurn(t, warm, "closed", idTurn("c1"))
			cachedWindow := wantWindow(t, warm, "closed", 1, "c1")
			if err := db.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// A cached window may still be served; it must be the one cached.
			var w memory.Window
			err = callNoPanic(t, "LoadContext, warm cache", func() (err error) { w, err = warm.LoadContext(ctx, "closed"); return err })
			switch {
			case errors.Is(err, dataflow.ErrClosed):
				t.Logf("LoadContext on a warm cache after Close: %v", err)
			case err == nil && sameWindow(w, cachedWindow):
				t.Logf("LoadContext on a warm cache after Close serves the cached window (TurnCount %d)", w.TurnCount)
			default:
				t.Errorf("LoadContext on a warm cache after Close = %+v, %v; want ErrClosed or the cached window %+v", w, err, cachedWindow)
			}
			calls := map[string]func() error{
				"SaveTurn":                func() error { return warm.SaveTurn(ctx, "closed", idTurn("c2")) },
				"SaveTurn, cold cache":    func() error { return cold.SaveTurn(ctx, "closed", idTurn("c2")) },
				"SaveTurn, no cache":      func() error { return uncached.SaveTurn(ctx, "closed", idTurn("c2")) },
				"LoadContext, cold cache": func() error { _, err := cold.LoadContext(ctx, "closed"); return err },
				"LoadContext, no cache":   func() error { _, err := uncached.LoadContext(ctx, "closed"); return err },
				"Clear":                   func() error { return warm.Clear(ctx, "closed") },
				"Clear, no cache":         func() error { return uncached.Clear(ctx, "closed") },
				"Backend.SessionInfo":     func() error { _, err := b.SessionInfo(ctx, "closed"); return err },
				"Backend.LoadWindow":      func() error { _, err := readWindow(ctx, b, "closed", 5); return err },
				"NewDataFlowBackend(db)":  func() error { _, err := backend.NewDataFlowBackend(db); return err },
				"Backend.SaveTurn":        func() error { return storeTurn(ctx, b, "closed", idTurn("c3")) },
				"Backend.ClearSession":    func() error { return b.ClearSession(ctx, "closed") },
				"LoadContext, cold, cancel": func() error {
					c, cancel := context.WithCancel(ctx)
					cancel()
					_, err := cold.LoadContext(c, "closed")
					return err
				},
			}
			for _, name := range slices.Sorted(maps.Keys(calls)) {
				err := callNoPanic(t, name, calls[name])
				want := dataflow.ErrClosed
				if strings.HasSuffix(name, "cancel") {
					want = context.Canceled
				}
				if !errors.Is(err, want) && !errors.Is(err, dataflow.ErrClosed) {
					t.Errorf("%s after Close = %v; want an error wrapping %v", name, err, want)
				}
			}
			if err := db.Close(); err != nil {
				t.Errorf("second Close = %v; want nil", err)
			}
			s := readStore(t, dbURL)
			if got := len(s.turns["closed"]); got != 1 {
				t.Errorf("%d turns stored; want 1", got)
			}
		})

		t.Run("Close while in use", func(t *testing.T) {
			db := openDB(t, dbURL)
			m := memoryOn(t, db, memory.WithCacheTTL(0))
			saveTurn(t, m, "closing-0", idTurn("warm")) // tables ready
			var closed atomic.Bool                      // set once Close has returned
			var okOps, errOps, afterClose atomic.Int64
			var wg sync.WaitGroup
			acked := make([][]string, 4)
			for g := range acked {
				session := fmt.Sprintf("closing-%d", g)
				wg.Go(func() {
					defer func() {
						if r := recover(); r != nil {
							t.Errorf("panic: %v", r)
						}
					}()
					for i := 0; ; i++ {
						wasClosed := closed.Load()
						id := fmt.Sprintf("g%06d", i)
						ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
						err := m.SaveTurn(ctx, session, idTurn(id))
						if err == nil {
							acked[g] = append(acked[g], id)
							_, err = m.LoadContext(ctx, session)
						}
						cancel()
						switch {
						case err == nil:
							okOps.Add(1)
						case wasClosed:
							afterClose.Add(1)
							if !errors.Is(err, dataflow.ErrClosed) {
								t.Errorf("operation begun after Close returned: %v; want ErrClosed", err)
							}
							return
						default:
							errOps.Add(1) // in flight at Close: any error
						}
					}
				})
			}
			time.Sleep(100 * time.Millisecond)
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			closed.Store(true)
			if !waitTimeout(&wg, 2*opTimeout) {
				t.Fatal("goroutines still running after Close: an operation hangs")
			}
			s := readStore(t, dbURL)
			for g, ids := range acked {
				s.requireTurns(t, fmt.Sprintf("closing-%d", g), ids)
			}
			t.Logf("%d operations ok before Close, %d failed in flight, %d after Close (ErrClosed), %d turns stored",
				okOps.Load(), errOps.Load(), afterClose.Load(), s.totalTurns())
		})
	})
}

// TestFaultOpenBadDirectory opens SQLite databases where they cannot be:
// in a missing directory, under a file, and in a read-only directory (new
// and existing database). Open fails at once with an error naming the
// place, and creates nothing.
func TestFaultOpenBadDirectory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(t *testing.T, path string) error {
		t.Helper()
		start := time.Now()
		db, err := dataflow.Open(ctx, "sqlite:///"+path)
		if err == nil {
			db.Close()
			return errors.New("Open succeeded")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Open took %v to fail", d)
		}
		t.Logf("Open(%s): %v", path, err)
		return err
	}

	t.Run("missing directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "missing", "sub")
		err := open(t, filepath.Join(dir, "chat.db"))
		if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("error %q; want it to say that directory %q does not exist", err, dir)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open created %s (stat: %v)", dir, err)
		}
	})
	t.Run("directory is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := open(t, filepath.Join(file, "chat.db")); !strings.Contains(err.Error(), file) {
			t.Errorf("error %q; want it to name %q", err, file)
		}
	})
	readOnly := func(t *testing.T, existing bool) {
		dir := readOnlyDir(t, func(dir string) {
			if existing {
				u := "sqlite:///" + filepath.Join(dir, "chat.db")
				db := openDB(t, u)
				saveTurn(t, memoryOn(t, db), "s", idTurn("x"))
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
		before := dirNames(t, dir)
		err := open(t, filepath.Join(dir, "chat.db"))
		// The wording is judged without the path, which may itself say "read-only".
		msg := strings.ToLower(strings.ReplaceAll(err.Error(), dir, "<dir>"))
		if !strings.Contains(err.Error(), dir) || !(strings.Contains(msg, "read-only") || strings.Contains(msg, "readonly") || strings.Contains(msg, "not writable")) {
			t.Errorf("error %q; want it to name %q and say it is read-only or not writable", err, dir)
		}
		if after := dirNames(t, dir); !slices.Equal(before, after) {
			t.Errorf("directory held %q, now %q", before, after)
		}
	}
	t.Run("read-only directory", func(t *testing.T) { readOnly(t, false) })
	t.Run("existing database in read-only directory", func(t *testing.T) { readOnly(t, true) })
}

// readOnlyDir returns a directory into which fill has written, made truly
// read-only: by permission bits when not root, else (root ignores them) by
// remounting a tmpfs read-only, else by chattr +i. If none works, the test
// is skipped with the reason.
func readOnlyDir(t *testing.T, fill func(dir string)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var how []string
	switch {
	case os.Geteuid() != 0:
		fill(dir)
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		how = append(how, "chmod 0555")
	case run(t, "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir) == nil:
		t.Cleanup(func() {
			if err := run(t, "umount", dir); err != nil {
				t.Errorf("umount %s: %v", dir, err)
			}
		})
		fill(dir)
		if err := run(t, "mount", "-o", "remount,ro", dir); err != nil {
			t.Skipf("cannot remount a tmpfs read-only (%v)", err)
		}
		how = append(how, "read-only tmpfs")
	default:
		fill(dir)
		if err := run(t, "chattr", "+i", dir); err != nil {
			t.Skipf("running as root, so permission bits do not stop writes, and neither mount -t tmpfs nor chattr +i works here (%v)", err)
		}
		t.Cleanup(func() { _ = run(t, "chattr", "-i", dir) })
		how = append(how, "chattr +i")
	}
	if f, err := os.Create(filepath.Join(dir, "probe")); err == nil {
		f.Close()
		t.Skipf("%s did not make %s read-only: a file could be created", how[0], dir)
	}
	t.Logf("%s made read-only by %s", dir, how[0])
	return dir
}

func run(t *testing.T, name string, args ...string) error {
	if _, err := exec.LookPath(name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func dirNames(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// faultURL returns a fresh database of dialect d and, on PostgreSQL, the
// unique application_name set on its URL ("" on SQLite).
func faultURL(t *testing.T, d dbtest.Dialect) (string, string) {
	t.Helper()
	raw := d.URL(t)
	if d.Name != "pg" {
		return raw, ""
	}
	return withAppName(t, raw)
}

// withAppName sets a unique application_name on a PostgreSQL URL, so that
// the connections opened with it can be found in pg_stat_activity.
func withAppName(t *testing.T, raw string) (string, string) {
	t.Helper()
	app := "tk_fault_" + randomHex(6)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String(), app
}

type cancelKey struct{}

// cancelPlan, put in an operation's context under cancelKey, tells
// cancelHook to cancel that context around a matching statement.
type cancelPlan struct {
	cancel context.CancelFunc
	after  bool // after the statement ran, rather than before
}

// cancelHook cancels the context of an operation that carries a
// cancelPlan when that operation runs a statement starting with match.
type cancelHook struct {
	match string
	hits  atomic.Int64
}

func (h *cancelHook) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	h.fire(ctx, ev, false)
	return ctx
}

func (h *cancelHook) AfterQuery(ctx context.Context, ev *bun.QueryEvent) { h.fire(ctx, ev, true) }

func (h *cancelHook) fire(ctx context.Context, ev *bun.QueryEvent, after bool) {
	if p, ok := ctx.Value(cancelKey{}).(cancelPlan); ok && p.after == after && strings.HasPrefix(ev.Query, h.match) {
		h.hits.Add(1)
		p.cancel()
	}
}

// requireNoOpenTransaction fails if a connection of the library is still
// inside a transaction: on SQLite another connection must get the write
// lock at once; on PostgreSQL no connection named app may stay idle in
// transaction (database/sql ends a cancelled one asynchronously, so this
// polls briefly).
func requireNoOpenTransaction(t *testing.T, dbURL, app string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if path, ok := strings.CutPrefix(dbURL, "sqlite:///"); ok {
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "BEGIN IMMEDIATE; ROLLBACK"); err != nil {
			t.Errorf("another connection cannot take the write lock: %v (a transaction was left open)", err)
		}
		return
	}
	db, _ := openChecker(t, os.Getenv(dbtest.EnvPostgres))
	var n int
	for {
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, app).Scan(&n)
		if err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("%d connections of the library still idle in transaction", n)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// holdWriteLock takes, from a connection of its own, the lock a save into
// session needs: the SQLite write lock, or the row lock of the session
// row (PostgreSQL, MySQL). release ends it.
func holdWriteLock(t *testing.T, dbURL, session string) (release func()) {
	t.Helper()
	ctx := context.Background()
	db, rowLocks := openChecker(t, dbURL)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lock := []string{"BEGIN IMMEDIATE"}
	if rowLocks {
		lock = []string{"BEGIN", "SELECT id FROM " + backend.SessionsTable + " WHERE id = '" + session + "' FOR UPDATE"}
	}
	for _, stmt := range lock {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("hold lock: %s: %v", stmt, err)
		}
	}
	return func() {
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Errorf("release lock: %v", err)
		}
		conn.Close()
	}
}

// compareWithReadThrough fails unless m's window of session equals what a
// new memory over db with opts (m's MaxTurns) reads from the database.
func compareWithReadThrough(t *testing.T, m *memory.PersistentBufferMemory, db *dataflow.DB, session string, opts ...memory.Option) {
	t.Helper()
	ctx := context.Background()
	got, err := m.LoadContext(ctx, session)
	if err != nil {
		t.Fatalf("LoadContext: %v", err)
	}
	want, err := memoryOn(t, db, append(opts, memory.WithCacheTTL(0))...).LoadContext(ctx, session)
	if err != nil {
		t.Fatalf("LoadContext (read-through): %v", err)
	}
	if !sameWindow(got, want) {
		t.Errorf("session %q: the cache holds TurnCount %d and %d turns, the database TurnCount %d and %d turns; turns only in the cache %v, only in the database %v",
			session, got.TurnCount, len(got.Turns), want.TurnCount, len(want.Turns), onlyIn(got, want), onlyIn(want, got))
	}
}

// onlyIn returns the IDs of a's turns that b lacks, at most 20.
func onlyIn(a, b memory.Window) []string {
	var out []string
	for _, x := range a.Turns {
		if !slices.ContainsFunc(b.Turns, func(y memory.Turn) bool { return y.ID == x.ID }) && len(out) < 20 {
			out = append(out, x.ID)
		}
	}
	return out
}

// sameWindow compares windows turn by turn (times with Equal).
func sameWindow(a, b memory.Window) bool {
	if a.TurnCount != b.TurnCount || len(a.Turns) != len(b.Turns) {
		return false
	}
	for i := range a.Turns {
		x, y := a.Turns[i], b.Turns[i]
		if x.ID != y.ID || x.User != y.User || x.Agent != y.Agent || !x.Timestamp.Equal(y.Timestamp) || !reflect.DeepEqual(x.Metadata, y.Metadata) {
			return false
		}
	}
	return true
}

// checkWindow fails for a window that holds a half or foreign turn.
func checkWindow(t *testing.T, session string, w memory.Window) {
	if w.TurnCount < len(w.Turns) {
		t.Errorf("session %q: TurnCount %d below the %d turns of the window", session, w.TurnCount, len(w.Turns))
	}
	for _, turn := range w.Turns {
		if want := idTurn(turn.ID); turn.User != want.User || turn.Agent != want.Agent {
			t.Errorf("session %q: turn %q is not whole: %q / %q", session, turn.ID, turn.User, turn.Agent)
		}
	}
}

// callNoPanic calls f, turning a panic into a test failure.
func callNoPanic(t *testing.T, name string, f func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", name, r)
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// waitTimeout waits for wg, reporting false if it took longer than d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func shortError(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
