package backend

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

// Table names DataFlowBackend uses.
const (
	SessionsTable = "turnkeep_sessions"
	MessagesTable = "turnkeep_messages"
)

// Message roles as stored.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// SessionRow is a session as stored: one row per session.
type SessionRow struct {
	bun.BaseModel `bun:"table:turnkeep_sessions"`

	ID        string    `bun:"id,pk,type:varchar(255)"`
	TurnCount int64     `bun:"turn_count,notnull"`
	Version   int64     `bun:"version,notnull"` // changes with every write; see memory.Version
	CreatedAt time.Time `bun:"created_at,notnull"`
	UpdatedAt time.Time `bun:"updated_at,notnull"`
}

// MessageRow is a message as stored: one row per message, keyed by session,
// turn sequence and position within the turn.
type MessageRow struct {
	bun.BaseModel `bun:"table:turnkeep_messages"`

	SessionID string         `bun:"session_id,pk,type:varchar(255)"`
	Seq       int64          `bun:"seq,pk"`
	Pos       int32          `bun:"pos,pk"`
	TurnID    string         `bun:"turn_id,notnull,type:varchar(128)"`
	Role      string         `bun:"role,notnull,type:varchar(32)"`
	Content   string         `bun:"content,notnull,type:text"`
	Metadata  sql.NullString `bun:"metadata,type:text"`
	CreatedAt time.Time      `bun:"created_at,notnull"`
}

// Option configures a DataFlowBackend.
type Option func(*DataFlowBackend) error

// WithMaxMessageBytes bounds each message and the metadata JSON (default
// memory.DefaultMaxMessageBytes).
func WithMaxMessageBytes(n int) Option {
	return func(b *DataFlowBackend) error {
		if n < 1 {
			return fmt.Errorf("%w: max message bytes must be at least 1", memory.ErrInvalidOption)
		}
		b.maxBytes = n
		return nil
	}
}

// DataFlowBackend is a memory.Backend on a dataflow.DB. It registers its two
// tables at construction and creates them on first use.
type DataFlowBackend struct {
	db       *dataflow.DB
	sessions *dataflow.Table[SessionRow]
	messages *dataflow.Table[MessageRow]
	maxBytes int

	saveSession  *dataflow.Stmt // upsert of the session row, returning the new count and version
	saveMessages *dataflow.Stmt // insert of the turn's messages, skipping a known turn ID
	loadWindow   *dataflow.Stmt // session count and version, plus the newest turns' messages if the version moved
	lockSession  *dataflow.Stmt // takes the session row's lock, creating the row if need be
	saveTurn     *dataflow.Stmt // PostgreSQL: the whole save in one statement; nil on SQLite
}

var (
	_ memory.VersionedBackend = (*DataFlowBackend)(nil)
	_ memory.TurnStorer       = (*DataFlowBackend)(nil)
)

// errDuplicate aborts the transaction of a turn whose ID is already stored.
var errDuplicate = errors.New("turn already stored")

// NewDataFlowBackend returns a backend on db. It does no I/O: the tables are
// created or checked on first use.
func NewDataFlowBackend(db *dataflow.DB, opts ...Option) (*DataFlowBackend, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: db must not be nil", memory.ErrInvalidOption)
	}
	b := &DataFlowBackend{db: db, maxBytes: memory.DefaultMaxMessageBytes}
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: option %d is nil", memory.ErrInvalidOption, i)
		}
		if err := opt(b); err != nil {
			return nil, err
		}
	}
	var err error
	if b.sessions, err = dataflow.Register[SessionRow](db); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	// WithoutRowID: on SQLite a session's messages sit together in key
	// order, so a window is a few adjacent pages however sessions
	// interleave (it kept LoadWindow within 1.3x from 1,000 to 1,000,000
	// messages; tests/scale_test.go).
	if b.messages, err = dataflow.Register[MessageRow](db, dataflow.WithoutRowID(),
		dataflow.WithUniqueIndex(MessagesTable+"_turn_idx", "session_id", "turn_id", "pos")); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	// A new session row starts at a random version, so that a session
	// cleared and saved again never repeats a version a cache may hold.
	b.saveSession = db.NewStmt(`INSERT INTO `+SessionsTable+` (id, turn_count, version, created_at, updated_at) VALUES (?, 1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET turn_count = `+SessionsTable+`.turn_count + 1, version = `+SessionsTable+`.version + 1, updated_at = excluded.updated_at
RETURNING turn_count, version`, b.sessions)
	b.lockSession = db.NewStmt(`INSERT INTO `+SessionsTable+` (id, turn_count, version, created_at, updated_at) VALUES (?, 0, 0, ?, ?)
ON CONFLICT (id) DO UPDATE SET turn_count = `+SessionsTable+`.turn_count`, b.sessions)
	b.saveMessages = db.NewStmt(`INSERT INTO `+MessagesTable+` (session_id, seq, pos, turn_id, role, content, metadata, created_at)
VALUES (?, ?, 0, ?, '`+RoleUser+`', ?, ?, ?), (?, ?, 1, ?, '`+RoleAssistant+`', ?, NULL, ?)
ON CONFLICT (session_id, turn_id, pos) DO NOTHING`, b.messages)
	if db.Dialect() == "pg" {
		// The whole save in one statement, so one round trip, atomic as
		// any statement is. A turn ID the session holds is seen by the
		// first CTE, and then nothing is bumped or inserted (no row comes
		// back). Two saves of one new ID at once both miss it: the session
		// row lock orders them, and the second's insert then violates the
		// turn index, which aborts its whole statement, its bump included.
		// A clear holds the session row lock (inserting the row if need
		// be), so the upsert waits for it, as the two-statement save does.
		// Repeating it stores nothing twice, so it is run again on a
		// pooled connection found dead, as BEGIN was.
		b.saveTurn = db.NewIdempotentStmt(`WITH known AS (
	SELECT 1 FROM `+MessagesTable+` WHERE session_id = ? AND turn_id = ? AND pos = 0
), s AS (
	INSERT INTO `+SessionsTable+` (id, turn_count, version, created_at, updated_at)
	SELECT ?, 1, CAST(? AS BIGINT), CAST(? AS TIMESTAMPTZ), CAST(? AS TIMESTAMPTZ) WHERE NOT EXISTS (SELECT 1 FROM known)
	ON CONFLICT (id) DO UPDATE SET turn_count = `+SessionsTable+`.turn_count + 1, version = `+SessionsTable+`.version + 1, updated_at = excluded.updated_at
	RETURNING turn_count, version
), m AS (
	INSERT INTO `+MessagesTable+` (session_id, seq, pos, turn_id, role, content, metadata, created_at)
	SELECT ?, s.turn_count, v.pos, ?, v.role, v.content, v.metadata, CAST(? AS TIMESTAMPTZ)
	FROM s, (VALUES (0, '`+RoleUser+`', CAST(? AS TEXT), CAST(? AS TEXT)), (1, '`+RoleAssistant+`', CAST(? AS TEXT), NULL)) AS v (pos, role, content, metadata)
)
SELECT turn_count, version FROM s`, b.sessions, b.messages)
	}
	// One statement answers both a cache check and a read: the session row
	// by primary key, then, only when its version is not the known one, an
	// index range scan of its newest turns (session_id = ? AND seq >
	// turn_count - maxTurns). When the version is known the range starts
	// past the newest turn, so nothing is read. There is no ORDER BY (see
	// scanWindow).
	// Times are read in the stored form (dataflow.TimeColumn), not guessed.
	b.loadWindow = db.NewReadStmt(`SELECT s.turn_count, s.version, m.seq, m.pos, m.turn_id, m.content, m.metadata, `+db.TimeColumn("m.created_at")+`
FROM `+SessionsTable+` s
LEFT JOIN `+MessagesTable+` m ON m.session_id = s.id
	AND m.seq > s.turn_count - CASE WHEN s.version = CAST(? AS BIGINT) THEN 0 ELSE CAST(? AS BIGINT) END
WHERE s.id = ?`, b.sessions, b.messages)
	return b, nil
}

// DB returns the database the backend stores into.
func (b *DataFlowBackend) DB() *dataflow.DB {
	if b == nil {
		return nil
	}
	return b.db
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// SaveTurn stores the turn's user and agent messages and bumps the session's
// turn count in one transaction of two statements. A turn whose ID the
// session already holds is not stored again, and nil is returned.
func (b *DataFlowBackend) SaveTurn(ctx context.Context, sessionID string, turn memory.Turn) error {
	_, err := b.SaveTurnVersioned(ctx, sessionID, memory.PreparedTurn{Turn: turn})
	return err
}

// StoreTurn is SaveTurn that also reports whether the turn was stored
// (false: the session already held its ID). It implements
// memory.TurnStorer.
func (b *DataFlowBackend) StoreTurn(ctx context.Context, sessionID string, turn memory.Turn) (bool, error) {
	s, err := b.SaveTurnVersioned(ctx, sessionID, memory.PreparedTurn{Turn: turn})
	return s.Stored, err
}

// MaxMessageBytes is the backend's size limit (WithMaxMessageBytes). It
// implements memory.VersionedBackend.
func (b *DataFlowBackend) MaxMessageBytes() int {
	if b == nil {
		return 0
	}
	return b.maxBytes
}

// SaveTurnVersioned is SaveTurn that also reports the turn's sequence number
// and the session's new version. A turn memory.Prepare made within the
// backend's limit is stored as it is; any other is validated first. It
// implements memory.VersionedBackend.
func (b *DataFlowBackend) SaveTurnVersioned(ctx context.Context, sessionID string, turn memory.PreparedTurn) (memory.Saved, error) {
	if err := b.check(sessionID); err != nil {
		return memory.Saved{}, err
	}
	if !turn.Prepared(b.maxBytes) {
		var err error
		if turn, err = memory.Prepare(turn.Turn, now(), b.maxBytes); err != nil {
			return memory.Saved{}, err
		}
	}
	t, meta := turn.Turn, turn.Metadata
	var metaArg any
	if meta != nil {
		metaArg = string(meta)
	}
	ts, at := t.Timestamp, now()
	if b.saveTurn != nil {
		return b.saveInOne(ctx, sessionID, t, metaArg, at)
	}
	var seq, version int64
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		rows, err := b.saveSession.QueryTx(ctx, tx, sessionID, firstVersion(), at, at)
		if err != nil {
			return err
		}
		if err := scanOne(rows, &seq, &version); err != nil {
			return err
		}
		res, err := b.saveMessages.ExecTx(ctx, tx,
			sessionID, seq, t.ID, t.User, metaArg, ts,
			sessionID, seq, t.ID, t.Agent, ts)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		switch {
		case err != nil:
			return err
		case n == 0:
			return errDuplicate
		case n != 2:
			return fmt.Errorf("stored %d of 2 messages", n)
		}
		return nil
	}, b.sessions, b.messages)
	// Exactly errDuplicate, not joined with a failed rollback, which must
	// be reported.
	if err == errDuplicate {
		return memory.Saved{}, nil
	}
	if err != nil {
		return memory.Saved{}, fmt.Errorf("backend: save turn: %w", err)
	}
	return memory.Saved{Stored: true, Seq: int(seq), Version: reported(version)}, nil
}

// saveInOne is SaveTurnVersioned on PostgreSQL: one statement, one round
// trip.
func (b *DataFlowBackend) saveInOne(ctx context.Context, sessionID string, t memory.Turn, metaArg any, at time.Time) (memory.Saved, error) {
	if err := ctx.Err(); err != nil {
		return memory.Saved{}, fmt.Errorf("backend: save turn: %w", err) // nothing sent
	}
	var seq, version int64
	rows, err := b.saveTurn.Query(ctx,
		sessionID, t.ID,
		sessionID, firstVersion(), at, at,
		sessionID, t.ID, t.Timestamp, t.User, metaArg, t.Agent)
	if err == nil {
		err = scanOne(rows, &seq, &version)
	}
	switch {
	case err == nil:
		return memory.Saved{Stored: true, Seq: int(seq), Version: reported(version)}, nil
	case errors.Is(err, sql.ErrNoRows):
		return memory.Saved{}, nil // the session holds the turn's ID
	case dataflow.IsUniqueViolation(err, MessagesTable+"_turn_idx"):
		return memory.Saved{}, nil // a concurrent save of the same ID won
	}
	// A statement sent and then cut off by the context or a lost
	// connection may have committed: ErrOutcomeUnknown. A retry with the
	// same turn ID stores nothing twice.
	return memory.Saved{}, fmt.Errorf("backend: save turn: %w", dataflow.WriteOutcome(ctx, err))
}

// firstVersion is the version column of a new session row: random, so that
// a session cleared and created again does not repeat the versions of its
// earlier life, and small enough never to overflow.
func firstVersion() int64 { return rand.Int64N(1<<62) + 1 }

// reported is the memory.Version of a stored version column. Rows written
// before the column existed hold 0; shifting by one keeps every stored
// session apart from memory.NoSession.
func reported(column int64) memory.Version { return memory.Version(column + 1) }

func scanOne(rows *sql.Rows, dest ...any) error {
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Close()
}

// LoadWindow returns the newest maxTurns turns, oldest first, and the exact
// turn count, in one statement: the session row joined with an index range
// scan of its newest messages.
func (b *DataFlowBackend) LoadWindow(ctx context.Context, sessionID string, maxTurns int) (memory.Window, error) {
	w, _, _, err := b.LoadWindowIfChanged(ctx, sessionID, maxTurns, memory.UnknownVersion)
	return w, err
}

// LoadWindowIfChanged is LoadWindow that skips the messages when the
// session's version is known, still in one statement. It implements
// memory.VersionedBackend.
func (b *DataFlowBackend) LoadWindowIfChanged(ctx context.Context, sessionID string, maxTurns int, known memory.Version) (memory.Window, memory.Version, bool, error) {
	if err := b.check(sessionID); err != nil {
		return memory.Window{}, 0, false, err
	}
	if maxTurns < 1 {
		return memory.Window{}, 0, false, fmt.Errorf("%w: maxTurns %d, want at least 1", memory.ErrInvalidOption, maxTurns)
	}
	w, v, err := b.load(ctx, sessionID, maxTurns, known)
	if err != nil {
		return memory.Window{}, 0, false, fmt.Errorf("backend: load window: %w", err)
	}
	if v == known {
		return memory.Window{}, v, false, nil
	}
	return w, v, true, nil
}

func (b *DataFlowBackend) load(ctx context.Context, sessionID string, maxTurns int, known memory.Version) (memory.Window, memory.Version, error) {
	// A read is safe to retry when a pooled connection turns out to have
	// died since its last use (the server restarted or terminated it).
	rows, err := b.loadWindow.Query(ctx, int64(known)-1, maxTurns, sessionID)
	if err != nil {
		return memory.Window{}, 0, err
	}
	return scanWindow(rows, maxTurns)
}

// scanWindow reads the rows of the load statement: no row for a session
// that does not exist; else the session's count and version on every row,
// with one message per row, or none when the messages were skipped.
//
// The statement has no ORDER BY, so that no plan ever sorts on the server:
// an index scan yields key order, and the rows are sorted here only when a
// plan yielded them otherwise (PostgreSQL may read a small table whole, in
// heap order).
func scanWindow(rows *sql.Rows, maxTurns int) (memory.Window, memory.Version, error) {
	defer rows.Close()
	var (
		w       memory.Window
		v       = memory.NoSession
		msgs    []messageRow
		sorted  = true
		count   int64
		version int64
		// Scanned into once per row and reused: declared in the loop they
		// would escape, a few allocations a row.
		seq             sql.NullInt64
		pos             sql.NullInt32
		turnID, content sql.NullString
		meta            sql.RawBytes // valid until the next row: copied if present
		at              dataflow.Time
		dest            = []any{&count, &version, &seq, &pos, &turnID, &content, &meta, &at}
	)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return memory.Window{}, 0, err
		}
		w.TurnCount, v = int(count), reported(version)
		if !seq.Valid { // the session row alone: its messages were skipped
			continue
		}
		r := messageRow{seq: seq.Int64, pos: pos.Int32, turnID: turnID.String, content: content.String, at: at.Time}
		if meta != nil {
			r.meta = bytes.Clone(meta)
		}
		if n := len(msgs); n > 0 && !msgs[n-1].before(&r) {
			sorted = false
		}
		if msgs == nil {
			msgs = make([]messageRow, 0, 2*min(maxTurns, int(count)))
		}
		msgs = append(msgs, r)
	}
	if err := rows.Err(); err != nil {
		return memory.Window{}, 0, err
	}
	if !sorted {
		slices.SortFunc(msgs, func(a, b messageRow) int {
			return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.pos, b.pos))
		})
	}
	if len(msgs) > 0 {
		w.Turns = make([]memory.Turn, 0, min(maxTurns, int(count)))
	}
	for i := range msgs {
		r := &msgs[i]
		if i == 0 || r.seq != msgs[i-1].seq { // a turn's messages share its sequence
			w.Turns = append(w.Turns, memory.Turn{ID: r.turnID, Timestamp: r.at.UTC()})
		}
		t := &w.Turns[len(w.Turns)-1]
		switch r.pos {
		case 0:
			t.User = r.content
			if r.meta != nil {
				if err := json.Unmarshal(r.meta, &t.Metadata); err != nil {
					return memory.Window{}, 0, fmt.Errorf("decode metadata of turn %s: %w", r.turnID, err)
				}
			}
		case 1:
			t.Agent = r.content
		}
	}
	return w, v, rows.Close()
}

// messageRow is one message as the load statement reads it.
type messageRow struct {
	seq     int64
	pos     int32
	turnID  string
	content string
	meta    []byte
	at      time.Time
}

func (r *messageRow) before(o *messageRow) bool {
	return r.seq < o.seq || r.seq == o.seq && r.pos < o.pos
}

// ClearSession removes the session's messages and its session row in one
// transaction.
//
// It first takes the session row's lock, inserting the row if there is
// none, as SaveTurn's upsert does: so a clear is ordered after every save
// already under way and before every later one, even the first save of a
// new session. Without the inserted row, on PostgreSQL (READ COMMITTED) a
// first save racing a clear could commit between the clear's statements:
// the clear would then delete the new turn's messages but not its session
// row, losing an acknowledged turn. Deleting the messages before taking
// the lock would also deadlock against saves taking the locks the other
// way.
func (b *DataFlowBackend) ClearSession(ctx context.Context, sessionID string) error {
	if err := b.check(sessionID); err != nil {
		return err
	}
	at := now()
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		if _, err := b.lockSession.ExecTx(ctx, tx, sessionID, at, at); err != nil {
			return err
		}
		if _, err := b.messages.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"session_id": sessionID}); err != nil {
			return err
		}
		_, err := b.sessions.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"id": sessionID})
		return err
	}, b.sessions, b.messages)
	if err != nil {
		return fmt.Errorf("backend: clear session: %w", err)
	}
	return nil
}

// SessionInfo reads the session row; a session with no turns is
// memory.ErrSessionNotFound.
func (b *DataFlowBackend) SessionInfo(ctx context.Context, sessionID string) (memory.SessionInfo, error) {
	if err := b.check(sessionID); err != nil {
		return memory.SessionInfo{}, err
	}
	row, err := b.sessions.Read(ctx, sessionID)
	if errors.Is(err, dataflow.ErrNotFound) {
		return memory.SessionInfo{}, fmt.Errorf("backend: session %q: %w", sessionID, memory.ErrSessionNotFound)
	}
	if err != nil {
		return memory.SessionInfo{}, fmt.Errorf("backend: session info: %w", err)
	}
	return memory.SessionInfo{
		TurnCount: int(row.TurnCount),
		CreatedAt: row.CreatedAt.UTC(),
		UpdatedAt: row.UpdatedAt.UTC(),
	}, nil
}

// Err returns dataflow.ErrClosed once the database is closed, and
// memory.ErrClosed for a backend not made by NewDataFlowBackend; nil
// otherwise. A PersistentBufferMemory asks it before answering from its
// cache without a read.
func (b *DataFlowBackend) Err() error {
	if b == nil || b.db == nil {
		return errNoDB
	}
	if b.db.Closed() {
		return dataflow.ErrClosed
	}
	return nil
}

// check fails for a backend without a database, then validates the
// session ID.
func (b *DataFlowBackend) check(sessionID string) error {
	if b == nil || b.db == nil {
		return errNoDB
	}
	return memory.ValidateSessionID(sessionID)
}

// errNoDB is what a backend not made by NewDataFlowBackend returns.
var errNoDB = fmt.Errorf("backend: %w: not made by NewDataFlowBackend", memory.ErrClosed)
