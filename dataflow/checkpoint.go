package dataflow

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// Background WAL checkpoints of the SQLite files Open opens.
//
// In WAL mode a COMMIT appends the transaction's pages to the -wal file; a
// checkpoint copies them into the database file, with an fsync of each, so
// that the WAL can start over. SQLite checkpoints by itself inside the
// COMMIT that takes the WAL past wal_autocheckpoint pages (1000), so one
// write in a few hundred pays for the whole copy: about 44 µs per save on
// average. Open sets wal_autocheckpoint=0 on its connections instead (see
// sqlitePragmas), and a checkpointer, a goroutine owned by the DB,
// checkpoints on a connection of its own, never inside a transaction of the
// application:
//
//   - PASSIVE once the WAL holds every pages not yet copied. It takes no
//     lock that readers or writers wait for and copies what no reader
//     still needs (frames up to the oldest open snapshot).
//   - RESTART after it, when the WAL has reached 2×every frames: under
//     sustained writes new frames arrive while PASSIVE copies, so the WAL
//     never finds itself fully copied at the start of a write, which is
//     when SQLite starts it over. RESTART takes the write lock, copies
//     what PASSIVE left (a few frames), waits for the readers of older
//     snapshots to finish (short reads do at once) and starts the WAL
//     over. It waits for the lock and the readers at most
//     restartBusyTimeout, so writers wait at most that long, and gives up
//     after that (acting as PASSIVE). If PASSIVE had found frames pinned by
//     a reader too, the next try waits from minRestartWait, doubling up to
//     maxRestartWait while they give up; otherwise the next wake-up tries.
//   - TRUNCATE instead of RESTART when the file has grown past boundFactor
//     ×every frames (a long reader pinned it): the file shrinks back.
//
// Without long readers the WAL restarts at about 2×every frames plus what
// writers add while one PASSIVE and one RESTART run (each syncs twice), so
// the file stays within boundFactor×every frames (every:
// WithCheckpointEvery) for every >= DefaultCheckpointEvery: 32 MiB by
// default with 4 KiB pages. TestCheckpointWALBound, 20,000 transactions at
// 10,000 a second with two readers in a loop on a busy 2-core VM, saw at
// most 6.3×every; since transactions reuse prepared statements, writers
// can outrun the copying, so a writer that finds the file past
// throttleFactor×every frames (at its wake-up stat) waits for the next
// RESTART, at most throttleWait: backpressure that keeps the bound. With a
// much smaller every, the frames written during a
// checkpoint's fsyncs dominate (every=200 reached 21×every there). A
// reader holding a snapshot pins every frame written after it: PASSIVE
// stops there and RESTART cannot start the WAL over, so the WAL grows by
// whatever is written while the reader lasts, as it would with SQLite's own
// checkpoint; writers lose at most restartBusyTimeout per maxRestartWait
// to the RESTARTs that give up; and TRUNCATE shrinks the file once the
// reader ends.
//
// The checkpointer wakes after every wakeEvery-th commit of RunInTx (an
// atomic add on the hot path) and on a ticker, for writes made outside
// RunInTx, when the -wal file changed. It runs a PASSIVE checkpoint, whose
// answer says how large the WAL is.
//
// Crash safety is unchanged. A transaction is committed once its COMMIT has
// appended it to the WAL: with synchronous=NORMAL that write reaches the
// operating system at COMMIT, so a process crash (SIGKILL) loses nothing
// committed, whether or not it was checkpointed; on recovery SQLite reads
// the WAL again. A checkpoint interrupted by a crash is repeated from the
// WAL, which stays authoritative until it completes. What power loss can
// cost (the commits since the WAL was last synced, which a checkpoint
// does first) is unchanged too: checkpoints run at the same WAL size as
// before, and synchronous=FULL still syncs every COMMIT.
type checkpointer struct {
	sql       *sql.DB
	wal       string // the -wal file
	every     uint32 // frames not yet copied that start a PASSIVE checkpoint
	wakeEvery uint64 // commits of RunInTx between wake-ups
	logger    *slog.Logger

	file *dbFile // the database file Open opened, which connect checks

	commits atomic.Uint64
	wake    chan struct{} // capacity 1: a wake-up pending
	cancel  context.CancelFunc
	done    chan struct{} // closed when the goroutine has returned

	// Owned by the goroutine until done is closed, then by close.
	conn     *sql.Conn
	pageSize int64
	walStat  os.FileInfo // the -wal file at the last ticker check
	// After a RESTART or TRUNCATE gave up, the next waits restartWait,
	// until restartAfter.
	restartWait  time.Duration
	restartAfter time.Time

	counts [numCkptModes]atomic.Uint64 // checkpoints run, by mode
	busy   [numCkptModes]atomic.Uint64 // of which stopped short

	// Writers that find the WAL past throttleFactor×every frames wait for
	// the next RESTART or TRUNCATE that starts it over (at most
	// throttleWait), so that writers faster than the checkpoint's copying
	// cannot outgrow the bound.
	startedMu sync.Mutex
	started   chan struct{} // closed, and replaced, when the WAL starts over
	throttled atomic.Uint64 // writers that waited
	pageBytes atomic.Int64  // pageSize, for writers
}

type ckptMode int

const (
	ckptPassive ckptMode = iota
	ckptRestart
	ckptTruncate
	numCkptModes
)

var ckptStatements = [numCkptModes]string{
	"PRAGMA wal_checkpoint(PASSIVE)",
	"PRAGMA wal_checkpoint(RESTART)",
	"PRAGMA wal_checkpoint(TRUNCATE)",
}

const (
	// checkInterval is how often the checkpointer looks at the WAL when no
	// commit of RunInTx woke it.
	checkInterval = 50 * time.Millisecond
	// restartBusyTimeout bounds how long RESTART and TRUNCATE wait for the
	// write lock and then, holding it, for readers: the longest a writer
	// waits for a background checkpoint.
	restartBusyTimeout = 25 * time.Millisecond
	// minRestartWait and maxRestartWait bound the pause after a RESTART
	// or TRUNCATE gave up, doubling while they keep giving up.
	minRestartWait = 50 * time.Millisecond
	maxRestartWait = time.Second
	// closeBusyTimeout bounds the final checkpoint's wait for transactions
	// still running when Close is called; closeTimeout bounds all of it.
	closeBusyTimeout = time.Second
	closeTimeout     = 5 * time.Second
	// throttleFactor×every frames is the WAL size past which a committing
	// writer waits for the checkpointer (throttleWait at most).
	throttleFactor = 6
	throttleWait   = 100 * time.Millisecond
	// stopTimeout bounds the wait for the goroutine to return once told:
	// its statement is interrupted, so it returns at once.
	stopTimeout = 5 * time.Second
)

// startCheckpointer starts the checkpointer of the SQLite file Open
// opened, whose connections are opened with wal_autocheckpoint=0, on sqldb,
// a pool of its own that close closes. It returns nil
// when cfg leaves checkpoints to SQLite.
func startCheckpointer(sqldb *sql.DB, file *dbFile, cfg config) *checkpointer {
	if cfg.checkpointEvery == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{
		sql:   sqldb,
		file:  file,
		wal:   file.path + "-wal",
		every: uint32(min(cfg.checkpointEvery, 1<<30)),
		// A write transaction adds at least one frame: waking every
		// every/2 commits checkpoints before about every frames wait, or
		// a few times that for larger transactions.
		wakeEvery: uint64(max(1, cfg.checkpointEvery/2)),
		logger:    cfg.logger,
		wake:      make(chan struct{}, 1),
		started:   make(chan struct{}),
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	go c.run(ctx)
	return c
}

// committed counts a committed write transaction and, every wakeEvery,
// wakes the checkpointer without waiting for it. It is all that a commit
// pays for checkpoints.
//
// At the wake-up it also looks at the size of the -wal file (a stat, which
// opens no descriptor): past throttleFactor×every frames the checkpointer
// has fallen behind the writers, and this writer waits for it to start the
// WAL over, at most throttleWait. Its transaction is committed already; the
// wait only slows the writers down to what checkpoints can copy.
func (c *checkpointer) committed() {
	if c == nil || c.commits.Add(1)%c.wakeEvery != 0 {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	page := c.pageBytes.Load()
	if page == 0 {
		return
	}
	fi, err := os.Stat(c.wal)
	if err != nil || fi.Size() <= walHeaderSize+throttleFactor*int64(c.every)*(walFrameHeaderSize+page) {
		return
	}
	c.startedMu.Lock()
	started := c.started
	c.startedMu.Unlock()
	c.throttled.Add(1)
	t := time.NewTimer(throttleWait)
	defer t.Stop()
	select {
	case <-started:
	case <-t.C:
	}
}

// restarted wakes the writers waiting for the WAL to start over.
func (c *checkpointer) restarted() {
	c.startedMu.Lock()
	close(c.started)
	c.started = make(chan struct{})
	c.startedMu.Unlock()
}

func (c *checkpointer) run(ctx context.Context) {
	defer close(c.done)
	tick := time.NewTicker(checkInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-tick.C:
			// Writes outside RunInTx: look only if the -wal file changed
			// (a stat, which opens no descriptor).
			fi, err := os.Stat(c.wal)
			if err != nil || sameStat(fi, c.walStat) {
				continue
			}
			c.walStat = fi
		}
		if err := c.check(ctx); err != nil && ctx.Err() == nil {
			c.logger.Warn("dataflow: background checkpoint", "wal", c.wal, "err", err)
		}
	}
}

// check runs a PASSIVE checkpoint, which copies what it can without
// blocking anyone, and learns from it how large the WAL is.
//
// It never reads the -shm file itself: SQLite's WAL locks are POSIX locks
// on that file, and closing any descriptor of a file drops every POSIX
// lock the process holds on it, so another process could then write over
// a WAL this one still uses (that lost turns in TestConcurrentWriterProcesses).
func (c *checkpointer) check(ctx context.Context) error {
	_, log, done, err := c.checkpoint(ctx, ckptPassive)
	if err != nil || time.Now().Before(c.restartAfter) {
		return err
	}
	// The file keeps its size when the WAL starts over: once grown past
	// the bound (a long reader pinned it), only TRUNCATE shrinks it, even
	// when the log in it is short again.
	grown := false
	if fi, err := os.Stat(c.wal); err == nil && fi.Size() > c.walBytes(boundFactor*int64(c.every)) {
		grown = true
	}
	if log < 2*int64(c.every) && !grown {
		return nil
	}
	pinned := done < log // a reader kept PASSIVE from copying all
	mode := ckptRestart
	if grown {
		mode = ckptTruncate
	}
	busy, _, _, err := c.checkpoint(ctx, mode)
	if err != nil {
		return err
	}
	if !busy {
		c.restarted()
	}
	if busy && pinned {
		// Given up, and a reader that pinned frames before kept its
		// snapshot for restartBusyTimeout: a long reader, probably. Try
		// again later, not at every wake-up, so that it holds writers up
		// rarely. (Short readers, or writers holding the lock, make the
		// next wake-up try again.)
		c.restartWait = min(max(2*c.restartWait, minRestartWait), maxRestartWait)
		c.restartAfter = time.Now().Add(c.restartWait)
	} else {
		c.restartWait = 0
	}
	return nil
}

// checkpoint runs one checkpoint on the checkpointer's connection and
// returns whether it had to stop short (SQLITE_BUSY: a reader or writer
// was in the way, which is not an error), the number of frames in the WAL
// and how many of them are in the database file.
func (c *checkpointer) checkpoint(ctx context.Context, mode ckptMode) (busy bool, log, done int64, err error) {
	if c.conn == nil {
		if err := c.connect(ctx, restartBusyTimeout); err != nil {
			return false, 0, 0, err
		}
	}
	err = c.conn.QueryRowContext(ctx, ckptStatements[mode]).Scan(&busy, &log, &done)
	if err != nil {
		sqlcore.Discard(c.conn)
		c.conn = nil
		return false, 0, 0, fmt.Errorf("checkpoint: %w", withCtxErr(ctx, err))
	}
	c.counts[mode].Add(1)
	if busy {
		c.busy[mode].Add(1)
	}
	return busy, log, done, nil
}

// connect takes a connection of the pool for the checkpointer alone, with
// its own busy timeout; it is discarded, never returned to the pool.
//
// It first checks that the path still names the file Open opened, and
// returns an error wrapping ErrDatabaseReplaced if not: a new connection
// would create an empty database where the file was deleted, or open the
// file put in its place, and its checkpoint would copy the WAL still
// lying beside the path (the old database's, when only the database file
// was moved) into that other file and empty it, losing what the old file
// lacks.
func (c *checkpointer) connect(ctx context.Context, busyTimeout time.Duration) error {
	if c.file != nil {
		if err := c.file.check(); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	conn, err := c.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", withCtxErr(ctx, err))
	}
	var pageSize int64
	_, err = conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout.Milliseconds()))
	if err == nil {
		err = conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize)
	}
	if err != nil {
		sqlcore.Discard(conn)
		return fmt.Errorf("checkpoint: %w", withCtxErr(ctx, err))
	}
	c.conn, c.pageSize = conn, pageSize
	c.pageBytes.Store(pageSize)
	return nil
}

// walBytes is the size of a WAL file of n frames.
func (c *checkpointer) walBytes(n int64) int64 {
	return walHeaderSize + n*(walFrameHeaderSize+c.pageSize)
}

// boundFactor×every frames is the size the WAL file stays within without
// long readers.
const boundFactor = 8

const (
	walHeaderSize      = 32
	walFrameHeaderSize = 24
)

// close stops the goroutine and folds the WAL into the database file with
// a TRUNCATE checkpoint, which leaves the -wal file empty. It waits for
// transactions still running at most closeBusyTimeout, and returns within
// about stopTimeout+closeTimeout whatever happens. If the WAL could not be
// folded in (a reader of another connection holds a snapshot), it stays:
// it is still valid, and SQLite checkpoints when the last connection to the
// file closes. If the checkpoint failed (a full disk) or the file is gone
// (ErrDatabaseReplaced), it returns why, and the WAL stays too: nothing
// committed is lost, and the next Open recovers it.
func (c *checkpointer) close() error {
	if c == nil {
		return nil
	}
	c.cancel()          // interrupts a running checkpoint
	defer c.sql.Close() // the checkpointer's own pool
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		return fmt.Errorf("checkpoint: background checkpoint did not stop within %v", stopTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if c.conn != nil {
		sqlcore.Discard(c.conn) // its busy timeout is the background one
		c.conn = nil
	}
	if err := c.connect(ctx, closeBusyTimeout); err != nil {
		return err
	}
	_, _, _, err := c.checkpoint(ctx, ckptTruncate)
	if c.conn != nil { // checkpoint discarded it if it failed
		sqlcore.Discard(c.conn)
		c.conn = nil
	}
	return err
}

// sameStat reports whether a and b describe the same unchanged file.
func sameStat(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
