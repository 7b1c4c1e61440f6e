package backend

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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

	saveSession  string // upsert of the session row, returning the new count
	saveMessages string // insert of the turn's messages, skipping a known turn ID
	loadWindow   string // session count plus the newest turns' messages
}

var (
	_ memory.Backend    = (*DataFlowBackend)(nil)
	_ memory.TurnStorer = (*DataFlowBackend)(nil)
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
	for _, opt := range opts {
		if opt == nil {
			continue
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
	b.saveSession = db.Rebind(`INSERT INTO ` + SessionsTable + ` (id, turn_count, created_at, updated_at) VALUES (?, 1, ?, ?)
ON CONFLICT (id) DO UPDATE SET turn_count = ` + SessionsTable + `.turn_count + 1, updated_at = excluded.updated_at
RETURNING turn_count`)
	b.saveMessages = db.Rebind(`INSERT INTO ` + MessagesTable + ` (session_id, seq, pos, turn_id, role, content, metadata, created_at)
VALUES (?, ?, 0, ?, '` + RoleUser + `', ?, ?, ?), (?, ?, 1, ?, '` + RoleAssistant + `', ?, NULL, ?)
ON CONFLICT (session_id, turn_id, pos) DO NOTHING`)
	// The turn count is an uncorrelated scalar subquery, evaluated once, so
	// the messages are an index range scan in key order on every planner:
	// (session_id = ? AND seq > count - maxTurns), no sort.
	count := `(SELECT turn_count FROM ` + SessionsTable + ` WHERE id = ?)`
	b.loadWindow = db.Rebind(`SELECT ` + count + `, m.seq, m.pos, m.turn_id, m.content, m.metadata, m.created_at
FROM ` + MessagesTable + ` m
WHERE m.session_id = ? AND m.seq > ` + count + ` - ?
ORDER BY m.seq, m.pos`)
	return b, nil
}

// DB returns the database the backend stores into.
func (b *DataFlowBackend) DB() *dataflow.DB { return b.db }

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// SaveTurn stores the turn's user and agent messages and bumps the session's
// turn count in one transaction of two statements. A turn whose ID the
// session already holds is not stored again, and nil is returned.
func (b *DataFlowBackend) SaveTurn(ctx context.Context, sessionID string, turn memory.Turn) error {
	_, err := b.StoreTurn(ctx, sessionID, turn)
	return err
}

// StoreTurn is SaveTurn that also reports whether the turn was stored
// (false: the session already held its ID). It implements
// memory.TurnStorer.
func (b *DataFlowBackend) StoreTurn(ctx context.Context, sessionID string, turn memory.Turn) (bool, error) {
	if err := memory.ValidateSessionID(sessionID); err != nil {
		return false, err
	}
	t, meta, err := memory.PrepareTurn(turn, now(), b.maxBytes)
	if err != nil {
		return false, err
	}
	var metaArg any
	if meta != nil {
		metaArg = string(meta)
	}
	ts, err := b.db.Bind(t.Timestamp)
	if err != nil {
		return false, err
	}
	at, err := b.db.Bind(now())
	if err != nil {
		return false, err
	}
	err = b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		rows, err := tx.QueryContext(ctx, b.saveSession, sessionID, at, at)
		if err != nil {
			return err
		}
		var seq int64
		if err := scanOne(rows, &seq); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, b.saveMessages,
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
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("backend: save turn: %w", err)
	}
	return true, nil
}

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
	if err := memory.ValidateSessionID(sessionID); err != nil {
		return memory.Window{}, err
	}
	if maxTurns < 1 {
		return memory.Window{}, fmt.Errorf("%w: maxTurns %d, want at least 1", memory.ErrInvalidOption, maxTurns)
	}
	if err := b.ready(ctx); err != nil {
		return memory.Window{}, err
	}
	// A read is safe to retry when a pooled connection turns out to have
	// died since its last use (the server restarted or terminated it).
	rows, err := b.db.QueryRetry(ctx, b.loadWindow, sessionID, sessionID, sessionID, maxTurns)
	if err != nil {
		return memory.Window{}, fmt.Errorf("backend: load window: %w", err)
	}
	w, err := scanWindow(rows, maxTurns)
	if err != nil {
		return memory.Window{}, fmt.Errorf("backend: load window: %w", err)
	}
	return w, nil
}

func (b *DataFlowBackend) ready(ctx context.Context) error {
	if err := b.sessions.Ready(ctx); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if err := b.messages.Ready(ctx); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	return nil
}

func scanWindow(rows *sql.Rows, maxTurns int) (memory.Window, error) {
	defer rows.Close()
	var (
		w       memory.Window
		count   int64
		seq     int64
		pos     int32
		turnID  string
		content string
		meta    sql.RawBytes // valid until the next row: decoded at once
		at      time.Time
		turnSeq int64 = -1 // the sequence of the last turn appended
	)
	for rows.Next() {
		if err := rows.Scan(&count, &seq, &pos, &turnID, &content, &meta, &at); err != nil {
			return memory.Window{}, err
		}
		w.TurnCount = int(count)
		if seq != turnSeq { // a turn's messages share its sequence
			turnSeq = seq
			if w.Turns == nil {
				w.Turns = make([]memory.Turn, 0, min(maxTurns, int(count)))
			}
			w.Turns = append(w.Turns, memory.Turn{ID: turnID, Timestamp: at.UTC()})
		}
		t := &w.Turns[len(w.Turns)-1]
		switch pos {
		case 0:
			t.User = content
			if meta != nil {
				if err := json.Unmarshal(meta, &t.Metadata); err != nil {
					return memory.Window{}, fmt.Errorf("decode metadata of turn %s: %w", turnID, err)
				}
			}
		case 1:
			t.Agent = content
		}
	}
	if err := rows.Err(); err != nil {
		return memory.Window{}, err
	}
	return w, rows.Close()
}

// ClearSession removes the session's messages and its session row in one
// transaction.
//
// The session row goes first, as in SaveTurn: its row lock orders a clear
// after every save already under way and before every later one. Deleting
// the messages first would, on PostgreSQL (READ COMMITTED), let a
// concurrent save commit messages the clear never saw, leave them behind
// without their session row (later saves then collide on the primary key),
// and deadlock against saves taking the locks the other way.
func (b *DataFlowBackend) ClearSession(ctx context.Context, sessionID string) error {
	if err := memory.ValidateSessionID(sessionID); err != nil {
		return err
	}
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		if _, err := b.sessions.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"id": sessionID}); err != nil {
			return err
		}
		_, err := b.messages.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"session_id": sessionID})
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
	if err := memory.ValidateSessionID(sessionID); err != nil {
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
