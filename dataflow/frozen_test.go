package dataflow_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// frozenItem is the model the network-failure tests write.
type frozenItem struct {
	bun.BaseModel `bun:"table:frozen_items"`

	ID   int64  `bun:"id,pk"`
	Name string `bun:"name,notnull"`
}

// midMarker names the statement that the "statement" cases stop.
const midMarker = "/* tk-mid-statement */"

// A transaction on PostgreSQL honours its context at every step, BEGIN and
// COMMIT included, when the network freezes (sockets open, nothing moving),
// and fails at once when the connection is cut. A COMMIT that was sent but
// not answered has an unknown outcome, and says so. Afterwards the pool
// holds no connection stuck in a transaction.
func TestRunInTxNetworkFailures(t *testing.T) {
	const deadline = time.Second
	// slack is what the scheduling of a loaded 2-core machine may add to
	// the deadline (measured overshoot: 0-2 ms); a call that waits for the
	// network instead runs to 5x the deadline, checked above.
	const slack = 500 * time.Millisecond
	begin := func(typ byte, q []byte) bool { return typ == 'Q' && isStmt(q, "BEGIN") }
	commit := func(typ byte, q []byte) bool { return typ == 'Q' && isStmt(q, "COMMIT") }
	mid := func(typ byte, q []byte) bool {
		return (typ == 'Q' || typ == 'P') && bytes.Contains(q, []byte(midMarker))
	}
	tests := []struct {
		name  string
		match func(typ byte, q []byte) bool
		cut   bool // close both sockets instead of freezing them
		// What the call returns.
		wantOK, wantDeadline, wantUnknown bool
		// Whether row 1 is there afterwards: 1 yes, 0 no, -1 either.
		wantRow int
	}{
		{name: "freeze at BEGIN", match: begin, wantDeadline: true, wantRow: 0},
		{name: "freeze mid-statement", match: mid, wantDeadline: true, wantRow: 0},
		{name: "freeze at COMMIT", match: commit, wantDeadline: true, wantUnknown: true, wantRow: -1},
		// A BEGIN on a connection that died did no work: it is retried
		// on another connection, and the call succeeds.
		{name: "cut at BEGIN", match: begin, cut: true, wantOK: true, wantRow: 1},
		{name: "cut mid-statement", match: mid, cut: true, wantRow: 0},
		{name: "cut at COMMIT", match: commit, cut: true, wantUnknown: true, wantRow: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, appName := newPGProxy(t, dbtest.PostgresURL(t))
			db := open(t, p.url)
			items := register[frozenItem](t, db)
			require.NoError(t, items.EnsureTable(testCtx(t, 10*time.Second)))

			p.arm(tt.match, tt.cut)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				done <- db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
					if err := items.WithTx(tx).Create(ctx, &frozenItem{ID: 1, Name: "a"}); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "UPDATE frozen_items SET name = $1 WHERE id = $2 "+midMarker, "b", 1)
					return err
				}, items)
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * deadline):
				p.heal() // unblock the call, so the test ends
				err = <-done
				t.Errorf("RunInTx still blocked %v after it began, with a deadline of %v (returned %v once the proxy closed its sockets)", 5*deadline, deadline, err)
			}
			elapsed := time.Since(start)
			t.Logf("returned after %v: %v", elapsed.Round(time.Millisecond), err)
			require.True(t, p.fired(), "the trigger never matched a statement")

			switch {
			case tt.wantOK:
				assert.NoError(t, err)
			case tt.wantDeadline:
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.LessOrEqual(t, elapsed, deadline+slack, "elapsed; want within the deadline plus %v", slack)
			default:
				assert.Error(t, err)
				assert.NotErrorIs(t, err, context.DeadlineExceeded)
			}
			if !tt.wantDeadline {
				assert.Less(t, elapsed, deadline/2, "a cut connection must fail the call at once")
			}
			if tt.wantUnknown {
				assert.ErrorIs(t, err, dataflow.ErrOutcomeUnknown)
			} else {
				assert.NotErrorIs(t, err, dataflow.ErrOutcomeUnknown)
			}

			p.heal()
			ctx2 := testCtx(t, 10*time.Second)
			require.NoError(t, db.RunInTx(ctx2, func(ctx context.Context, tx *dataflow.Tx) error {
				return items.WithTx(tx).Create(ctx, &frozenItem{ID: 2, Name: "after"})
			}, items), "a fresh transaction after the network healed")
			if tt.wantRow >= 0 {
				_, err := items.Read(ctx2, int64(1))
				if tt.wantRow == 1 {
					assert.NoError(t, err, "row 1")
				} else {
					assert.ErrorIs(t, err, dataflow.ErrNotFound, "row 1")
				}
			}
			assertNoIdleInTx(t, appName)
		})
	}
}

// isStmt reports whether the query text of a Query message (q, ending in
// NUL) is the statement stmt.
func isStmt(q []byte, stmt string) bool {
	return bytes.EqualFold(bytes.TrimSpace(bytes.TrimRight(q, "\x00")), []byte(stmt))
}

// assertNoIdleInTx fails unless, within a few seconds, no backend of the
// application is idle inside a transaction.
func assertNoIdleInTx(t *testing.T, appName string) {
	t.Helper()
	admin, err := sql.Open("pgx", os.Getenv(dbtest.EnvPostgres))
	require.NoError(t, err)
	defer admin.Close()
	ctx := testCtx(t, 10*time.Second)
	var n int
	for {
		err := admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, appName).Scan(&n)
		require.NoError(t, err, "pg_stat_activity")
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("%d backends of %s still idle in transaction", n, appName)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pgProxy forwards TCP connections to PostgreSQL. Armed with a trigger, it
// watches the client's messages and, at the first that matches, either
// freezes (stops forwarding in both directions on every connection, new
// ones included, with all sockets left open) or cuts that connection
// (closes both of its sockets). The matching message is not forwarded.
type pgProxy struct {
	ln       net.Listener
	upstream string
	url      string // the database URL, through the proxy

	mu      sync.Mutex // protects the fields below
	thaw    *sync.Cond // signalled when frozen is cleared
	match   func(typ byte, body []byte) bool
	cut     bool
	matched bool
	frozen  bool
	conns   []net.Conn
}

// newPGProxy starts a proxy in front of the server of dbURL and returns it
// with the application name that its URL sets.
func newPGProxy(t *testing.T, dbURL string) (*pgProxy, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &pgProxy{ln: ln, upstream: u.Host}
	p.thaw = sync.NewCond(&p.mu)
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	appName := "tk-proxy-" + hex.EncodeToString(rb[:])
	q := u.Query()
	q.Set("application_name", appName)
	u.RawQuery = q.Encode()
	u.Host = ln.Addr().String()
	p.url = u.String()
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.heal()
	})
	return p, appName
}

// arm sets the trigger; it fires once.
func (p *pgProxy) arm(match func(typ byte, body []byte) bool, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match, p.cut, p.matched = match, cut, false
}

// fired reports whether the trigger matched.
func (p *pgProxy) fired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.matched
}

// heal closes every connection made so far and forwards again.
func (p *pgProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.frozen = false
	p.match = nil
	p.thaw.Broadcast()
}

// wait blocks while the proxy is frozen.
func (p *pgProxy) wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.frozen {
		p.thaw.Wait()
	}
}

func (p *pgProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go p.fromServer(client, server)
		go p.fromClient(client, server)
	}
}

// fromServer copies the server's bytes to the client.
func (p *pgProxy) fromServer(client, server net.Conn) {
	defer client.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// fromClient copies the client's messages to the server one at a time,
// checking each against the trigger.
func (p *pgProxy) fromClient(client, server net.Conn) {
	defer server.Close()
	// The startup message has no type byte: a length, then the rest.
	var n [4]byte
	if _, err := io.ReadFull(client, n[:]); err != nil {
		return
	}
	startup := make([]byte, binary.BigEndian.Uint32(n[:]))
	copy(startup, n[:])
	if _, err := io.ReadFull(client, startup[4:]); err != nil {
		return
	}
	p.wait()
	if _, err := server.Write(startup); err != nil {
		return
	}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return
		}
		msg := make([]byte, 1+binary.BigEndian.Uint32(hdr[1:]))
		copy(msg, hdr[:])
		if _, err := io.ReadFull(client, msg[5:]); err != nil {
			return
		}
		p.mu.Lock()
		if p.match != nil && !p.matched && p.match(msg[0], msg[5:]) {
			p.matched = true
			if p.cut {
				client.Close()
				server.Close()
				p.mu.Unlock()
				return
			}
			p.frozen = true
		}
		p.mu.Unlock()
		p.wait()
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}

// BEGIN IMMEDIATE on SQLite gives up waiting for another writer's lock when
// its context ends, long before the busy timeout.
func TestRunInTxBeginImmediateHonorsContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	db := open(t, "sqlite:///"+path, dataflow.WithBusyTimeout(10*time.Second))
	other, err := sql.Open("sqlite", "file://"+path)
	require.NoError(t, err)
	defer other.Close()
	conn, err := other.Conn(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(t.Context(), "BEGIN IMMEDIATE")
	require.NoError(t, err, "take the write lock")
	defer conn.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck

	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	err = db.RunInTx(ctx, func(context.Context, *dataflow.Tx) error { return nil })
	elapsed := time.Since(start)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, elapsed, deadline+500*time.Millisecond, "RunInTx waited for the lock past its deadline")
	assert.False(t, errors.Is(err, dataflow.ErrOutcomeUnknown), "nothing was committed: %v", err)
}

// A transaction whose context ends before COMMIT is sent rolls back and
// returns the context's error: its outcome is known.
func TestRunInTxContextEndedBeforeCommit(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		db := open(t, d.URL(t))
		items := register[frozenItem](t, db)
		require.NoError(t, items.EnsureTable(testCtx(t, 10*time.Second)))
		ctx, cancel := context.WithCancel(t.Context())
		err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			if err := items.WithTx(tx).Create(ctx, &frozenItem{ID: 1, Name: "a"}); err != nil {
				return err
			}
			cancel()
			return nil
		}, items)
		assert.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, dataflow.ErrOutcomeUnknown)
		_, err = items.Read(testCtx(t, 10*time.Second), int64(1))
		assert.ErrorIs(t, err, dataflow.ErrNotFound, "row 1 after the rollback")
		require.NoError(t, db.RunInTx(testCtx(t, 10*time.Second), func(ctx context.Context, tx *dataflow.Tx) error {
			return items.WithTx(tx).Create(ctx, &frozenItem{ID: 2, Name: "b"})
		}, items), "the next transaction")
	})
}
