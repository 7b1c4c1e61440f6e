package backend

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/cache"
	"github.com/turnkeep/turnkeep/internal/optx"
)

// Table names DataFlowBackend uses.
const (
	SessionsTable = "turnkeep_sessions"
	MessagesTable = "turnkeep_messages"
)

// SessionRow is a session as stored: one row per session.
type SessionRow struct {
	bun.BaseModel `bun:"table:turnkeep_sessions"`

	ID        string         `bun:"id,pk,type:varchar(320)"` // driver.SessionKey: the tenant and the session ID
	TurnCount int64          `bun:"turn_count,notnull"`
	Version   int64          `bun:"version,notnull"`           // changes with every write; see driver.Version
	Tokens    int64          `bun:"tokens,notnull,default:0"`  // the tokens of every stored message
	Counted   int16          `bun:"counted,notnull,default:0"` // 1: every message has its ID and count (every write sets it); 0: rows of a release before counts, until the data upgrade (CountedUpgrade)
	Tenant    string         `bun:"tenant,notnull,type:varchar(64),default:''"`
	UserID    string         `bun:"user_id,notnull,type:varchar(255),default:''"` // the owner; "" for none
	Title     string         `bun:"title,notnull,type:text,default:''"`
	Metadata  sql.NullString `bun:"metadata,type:text"`
	CreatedAt time.Time      `bun:"created_at,notnull"`
	UpdatedAt time.Time      `bun:"updated_at,notnull"`
	// A fork (fork.go): ForkOf is the key of the session it was forked
	// from and ForkTurn the turn it was forked at ("" for no fork), its
	// provenance, kept when the parent goes. Base is the key of the
	// session that stores its turns up to BaseSeq ("" for none): its own
	// message rows all have a greater seq. Rows of an earlier release
	// get the defaults, a session that is no fork.
	ForkOf   string `bun:"fork_of,notnull,type:varchar(320),default:''"`
	ForkTurn string `bun:"fork_turn,notnull,type:varchar(128),default:''"`
	Base     string `bun:"base,notnull,type:varchar(320),default:''"`
	BaseSeq  int64  `bun:"base_seq,notnull,default:0"`
}

// MessageRow is a message as stored: one row per message, keyed by session,
// turn sequence and position within the turn.
//
// TokensBefore is the tokens of every turn of the session before this
// one, the same on every message of a turn, so that a token-budget window
// is a range of one index: the turns whose TokensBefore is at least the
// session's tokens minus the budget. Rows written before messages had IDs
// and counts hold a NULL MsgID and 0 tokens, and their session's row has
// Counted 0: the data upgrade CountedUpgrade (upgrade.go) fills in their
// IDs and counts once, before the backend's first use, so that saves,
// appends and loads read and write this one form. The new columns have
// defaults, so rows inserted as the previous release wrote them stay
// valid.
type MessageRow struct {
	bun.BaseModel `bun:"table:turnkeep_messages"`

	SessionID    string         `bun:"session_id,pk,type:varchar(320)"` // the session's key
	Seq          int64          `bun:"seq,pk"`
	Pos          int32          `bun:"pos,pk"`
	TurnID       string         `bun:"turn_id,notnull,type:varchar(128)"`
	Role         string         `bun:"role,notnull,type:varchar(32)"`
	Content      string         `bun:"content,notnull,type:text"`
	Metadata     sql.NullString `bun:"metadata,type:text"` // the turn's, on its first message
	CreatedAt    time.Time      `bun:"created_at,notnull"` // the turn's timestamp
	MsgID        sql.NullString `bun:"msg_id,type:varchar(160)"`
	Name         string         `bun:"name,notnull,type:text,default:''"`
	ToolCalls    sql.NullString `bun:"tool_calls,type:text"`
	ToolCallID   string         `bun:"tool_call_id,notnull,type:text,default:''"`
	Parts        sql.NullString `bun:"parts,type:text"`
	MsgMetadata  sql.NullString `bun:"msg_metadata,type:text"`
	Tokens       int64          `bun:"tokens,notnull,default:0"`
	TokensBefore int64          `bun:"tokens_before,notnull,default:0"`
	SearchText   sql.NullString `bun:"search_text,type:text"` // PostgreSQL: driver.SearchText of Content, under the search index; NULL on SQLite
}

// Option configures a DataFlowBackend. Options follow one rule in every
// turnkeep package: a nil Option, or one given a nil or out-of-range
// value, is an error wrapping driver.ErrInvalidOption.
type Option func(*DataFlowBackend) error

// WithLogger makes the backend log to l (default: discard): at Error, a
// write that commits on its own whose outcome is unknown (it wraps
// dataflow.ErrOutcomeUnknown; those of transactions are the DB's to log,
// see dataflow.WithLogger). Session keys are logged, content never. A
// nil l is an error.
func WithLogger(l *slog.Logger) Option {
	return func(b *DataFlowBackend) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", driver.ErrInvalidOption)
		}
		b.log = l
		return nil
	}
}

// WithSearchIndex(false) keeps no full-text index on SQLite: a save is then
// two statements instead of three, and Search is driver.ErrNotSupported.
// The default keeps one (on PostgreSQL the index costs no statement, and
// the option only stops the backend from creating it).
func WithSearchIndex(on bool) Option {
	return func(b *DataFlowBackend) error {
		b.noSearch = !on
		return nil
	}
}

// DataFlowBackend is a driver.Backend on a dataflow.DB. It registers its
// tables at construction and creates them on first use.
type DataFlowBackend struct {
	db       *dataflow.DB
	store    store // the engine's SQL (store.go)
	sessions *dataflow.Table[SessionRow]
	messages *dataflow.Table[MessageRow]
	erased   *dataflow.Table[ErasedRow] // sessions DeleteUser deleted (erased.go)
	summary  summaryState               // sessions' summaries and their leases (summary.go)

	saveSession *dataflow.Stmt // upsert of the session row, returning the new count, version and tokens; no row when DeleteUser deleted the session since the write began
	knownTurn   *dataflow.Stmt // whether the session holds a turn ID
	loadWindow  *dataflow.Stmt // session count and version, plus the newest turns' messages if the version moved
	loadBudget  *dataflow.Stmt // loadWindow within a token budget
	lockRow     *dataflow.Stmt // reads the session row, locking it where the engine has row locks (an append's transaction)
	lockSession *dataflow.Stmt // takes the session row's lock, creating the row if need be
	findTurn    *dataflow.Stmt // a turn's sequence, tokens before it, timestamp and last position
	bumpSession *dataflow.Stmt // an append's update of the session row
	shiftBefore *dataflow.Stmt // an append's update of the later turns' tokens before them

	namedMu sync.Mutex
	named   map[string]*dataflow.Stmt // statements whose text depends on a query's shape, made as needed (stmt)

	log       *slog.Logger  // WithLogger
	noSearch  bool          // WithSearchIndex(false)
	search    cache.Ensurer // creates the search index once (search.go)
	upgrade   cache.Ensurer // runs the data upgrades once (upgrade.go)
	searchOff atomic.Bool   // SQLite: no FTS table, and the DB may not create one
	rereads   atomic.Uint64 // windows and history pages read again for a hole (readWhole)
	compact   bool          // the store keeps compact message keys (compactKeys, message_keys.go)
	queue     searchQueue   // SQLite: the messages saves queued for the search index (sqlite_search_queue.go)
}

var (
	_ driver.Backend        = (*DataFlowBackend)(nil)
	_ driver.EngineReporter = (*DataFlowBackend)(nil)
)

// errDuplicate aborts the transaction of a save whose turn ID the session
// holds already.
var errDuplicate = errors.New("turn already stored")

// errSeqConflict is a store's save of a guarded turn (Seq > 0) that wrote
// nothing because the session does not hold exactly Seq-1 turns. Save
// then tells a turn the session holds already (no conflict, whatever its
// Seq) from a conflict.
var errSeqConflict = errors.New("the session is not at the turn's seq")

// A guard is the form of a save's condition on the session's count, by
// the turn's Seq: none, the session's first turn, or a later one. A store
// whose statement writes a new session row only for the first turn picks
// its statement by it.
type guard int

const (
	guardNone  guard = iota // Seq 0: no condition
	guardFirst              // Seq 1: the session holds no turn
	guardLater              // Seq > 1: the session exists and holds Seq-1 turns
)

// guardOf returns the guard of a turn of Seq seq.
func guardOf(seq int) guard {
	switch {
	case seq <= 0:
		return guardNone
	case seq == 1:
		return guardFirst
	}
	return guardLater
}

// loadColumns are the columns scanWindow reads, but for the time column
// (dataflow.TimeColumn of m.created_at), which follows.
const loadColumns = `SELECT s.turn_count, s.version, m.seq, m.pos, m.turn_id, m.msg_id, m.role, m.content, m.name,
	m.tool_calls, m.tool_call_id, m.parts, m.msg_metadata, m.tokens, m.metadata, `

// messageColumns are the columns an insert of message rows binds, in order.
const messageColumns = `session_id, seq, pos, turn_id, msg_id, role, content, name, tool_calls, tool_call_id, parts, msg_metadata, tokens, tokens_before, metadata, created_at, search_text`

// NewDataFlowBackend returns a backend on db. It does no I/O: the tables are
// created or checked on first use.
func NewDataFlowBackend(db *dataflow.DB, opts ...Option) (*DataFlowBackend, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: db must not be nil", driver.ErrInvalidOption)
	}
	minWait, maxWait := db.EnsureBackoff() // first-use steps of the backend wait as the DB's do
	b := &DataFlowBackend{db: db,
		search:  cache.Ensurer{Timeout: searchIndexTimeout, MinBackoff: minWait, MaxBackoff: maxWait},
		upgrade: cache.Ensurer{Timeout: upgradeTimeout, MinBackoff: minWait, MaxBackoff: maxWait},
		log:     slog.New(slog.DiscardHandler), named: make(map[string]*dataflow.Stmt)}
	if err := optx.Apply(b, opts); err != nil {
		return nil, err
	}
	var err error
	if b.store, err = newStore(b); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	// Listing and deletion by owner or age are keyset range scans of these
	// indexes, newest first. The owner index holds owned sessions only
	// (ownerWhere): a save of a session with no owner writes no entry in
	// it (2.2 WAL pages less per save on SQLite). The index it replaces,
	// on every row, is dropped where an earlier release made it.
	if b.sessions, err = dataflow.Register[SessionRow](db,
		dataflow.WithPartialIndex(ownerIdx, ownerWhere, "tenant", "user_id", "updated_at", "id"),
		dataflow.WithDroppedIndex(SessionsTable+"_user_idx"),
		dataflow.WithIndex(SessionsTable+"_tenant_idx", "tenant", "updated_at", "id"),
		dataflow.WithPartialIndex(forkIdx, forkWhere, "fork_of", "created_at", "id"),
		dataflow.WithPartialIndex(baseIdx, baseWhere, "base")); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	// WithoutRowID: on SQLite a session's messages sit together in key
	// order, so a window is a few adjacent pages however sessions
	// interleave (it kept LoadWindow within 1.3x from 1,000 to 1,000,000
	// messages; tests/scale_test.go). The indexes are the store's
	// (messageIndexes).
	_, b.compact = b.store.(compactKeys)
	messageOpts := append([]dataflow.ModelOption{dataflow.WithoutRowID()}, indexOptions(b.messageIndexes())...)
	if b.messages, err = dataflow.Register[MessageRow](db, messageOpts...); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if b.erased, err = dataflow.Register[ErasedRow](db,
		dataflow.WithIndex(ErasedTable+"_tenant_idx", "tenant", "erased_at")); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	// A new session row starts at a random version, so that a session
	// cleared and saved again never repeats a version a cache may hold.
	// A session DeleteUser deleted after the write began is not made
	// again (ErasedRow): then no row comes back.
	b.saveSession = db.NewStmt(b.form("saveSession", `INSERT INTO `+SessionsTable+` (id, tenant, turn_count, version, tokens, counted, created_at, updated_at)
SELECT `+b.cast("?", "VARCHAR")+`, `+b.cast("?", "VARCHAR")+`, 1, `+b.cast("?", "BIGINT")+`, `+b.cast("?", "BIGINT")+`, 1, `+b.cast("?", "TIMESTAMPTZ")+`, `+b.cast("?", "TIMESTAMPTZ")+`
WHERE `+b.erasedCheck()+`
ON CONFLICT (id) DO UPDATE SET turn_count = `+SessionsTable+`.turn_count + 1, version = `+SessionsTable+`.version + 1,
	tokens = `+SessionsTable+`.tokens + excluded.tokens, updated_at = excluded.updated_at
RETURNING turn_count, version, tokens`), b.sessions, b.erased)
	b.lockSession = db.NewStmt(b.form("lockSession", `INSERT INTO `+SessionsTable+` (id, tenant, turn_count, version, tokens, counted, created_at, updated_at) VALUES (?, ?, 0, 0, 0, 1, ?, ?)
ON CONFLICT (id) DO UPDATE SET turn_count = `+SessionsTable+`.turn_count`), b.sessions)
	b.knownTurn = db.NewReadStmt(`SELECT 1 FROM `+MessagesTable+` WHERE session_id = ? AND turn_id = ? AND pos = 0`, b.messages)
	b.findTurn = db.NewStmt(`SELECT m.seq, m.tokens_before, `+db.TimeColumn("m.created_at")+`,
	(SELECT MAX(x.pos) FROM `+MessagesTable+` x WHERE x.session_id = m.session_id AND x.seq = m.seq)
FROM `+MessagesTable+` m WHERE m.session_id = ? AND m.turn_id = ? AND m.pos = 0`, b.sessions, b.messages)
	b.bumpSession = db.NewStmt(b.form("bumpSession", `UPDATE `+SessionsTable+` SET version = version + 1, tokens = tokens + ?, updated_at = ? WHERE id = ?
RETURNING turn_count, version`), b.sessions)
	b.lockRow = db.NewStmt(`SELECT 1 FROM `+SessionsTable+` WHERE id = ?`+b.store.rowLock(), b.sessions)
	b.shiftBefore = db.NewStmt(`UPDATE `+MessagesTable+` SET tokens_before = tokens_before + ? WHERE session_id = ? AND seq > ?`, b.messages)
	b.store.prepare()
	// One statement answers both a cache check and a read (windowReads,
	// fork.go): the session row by primary key, then, only when its
	// version is not the known one, an index range scan of its newest
	// turns per session of its fork chain. There is no ORDER BY (see
	// scanWindow).
	window, budget := b.windowReads()
	b.loadWindow = db.NewReadStmt(window, b.sessions, b.messages)
	b.loadBudget = db.NewReadStmt(budget, b.sessions, b.messages)
	if err := b.initSummaries(window, budget); err != nil {
		return nil, err
	}
	return b, nil
}

// insertRows returns the insert of n message rows: an append's skips the
// rows of a held message ID; a save's skips only those of a held turn, so
// that another turn's message ID is an error.
func (b *DataFlowBackend) insertRows(n int, append bool) *dataflow.Stmt {
	name := fmt.Sprintf("insert/%d/%t", n, append)
	return b.stmt(name, func() *dataflow.Stmt {
		if own, ok := b.store.(rowInserts); ok {
			return b.db.NewStmt(own.insertRowsQuery(n, append), b.messages)
		}
		var q strings.Builder
		q.WriteString(`INSERT INTO ` + MessagesTable + ` (` + messageColumns + `) VALUES `)
		for i := range n {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		}
		if append {
			q.WriteString(` ON CONFLICT DO NOTHING`)
		} else {
			q.WriteString(` ON CONFLICT (session_id, turn_id, pos) DO NOTHING`)
		}
		return b.db.NewStmt(q.String(), b.messages)
	})
}

// DB returns the database the backend stores into.
func (b *DataFlowBackend) DB() *dataflow.DB {
	if b == nil {
		return nil
	}
	return b.db
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// Save stores turn as the newest turn of the session and reports what it
// did: on SQLite in one transaction of two statements, on PostgreSQL in
// one statement. A turn driver.Prepare made is stored as it is; any other
// is validated first, within driver.DefaultMaxMessageBytes. A message ID
// the session holds in another turn is an error wrapping
// driver.ErrInvalidTurn, and nothing is stored. It implements driver.Backend.
//
// A turn with Seq > 0 is stored only as the session's turn Seq: the same
// statement or transaction checks the session's count under the session
// row's lock, so two saves of one Seq at once store one turn. Otherwise
// nothing is written and the error wraps driver.ErrConflict, unless the
// session holds the turn's ID already (one more read, on that path only),
// which is no conflict whatever its Seq.
func (b *DataFlowBackend) Save(ctx context.Context, sessionID string, turn driver.PreparedTurn) (driver.Saved, error) {
	if err := b.check(sessionID); err != nil {
		return driver.Saved{}, err
	}
	begun := now() // a DeleteUser of the session after this refuses the save (ErasedRow)
	if !turn.Prepared() {
		var err error
		if turn, err = driver.Prepare(turn.Turn, begun, 0, nil); err != nil {
			return driver.Saved{}, fmt.Errorf("backend: %w", err)
		}
	}
	if err := b.upgraded(ctx, turn.Counter()); err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	saved, err := b.save(ctx, sessionID, turn, begun)
	if err == errDuplicate { // exactly: not joined with a failed rollback, which must be reported
		return driver.Saved{}, nil
	}
	if err == errSeqConflict {
		switch known, kerr := b.holds(ctx, sessionID, turn.ID); {
		case kerr != nil:
			return driver.Saved{}, fmt.Errorf("backend: %w", kerr)
		case known:
			return driver.Saved{}, nil
		}
		return driver.Saved{}, fmt.Errorf("backend: %s turn %q: %w: it is not turn %d", sessionName(sessionID), turn.ID, bare{driver.ErrConflict}, turn.Seq)
	}
	if b.store.msgIDConflict(err) {
		// Either the turn is stored (a concurrent save of the same ID won,
		// and its derived message IDs met first) or a message ID is
		// another turn's.
		known, kerr := b.holds(ctx, sessionID, turn.ID)
		switch {
		case kerr != nil:
			return driver.Saved{}, fmt.Errorf("backend: %w", kerr)
		case known:
			return driver.Saved{}, nil
		}
		return driver.Saved{}, fmt.Errorf("backend: %s turn %q: %w: a message id of the turn is stored in another turn", sessionName(sessionID), turn.ID, bare{driver.ErrInvalidTurn})
	}
	if err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	b.queued(ctx, sessionID, saved.Messages)
	return saved, nil
}

// holds reports whether the session holds the turn ID.
func (b *DataFlowBackend) holds(ctx context.Context, sessionID, turnID string) (bool, error) {
	rows, err := b.knownTurn.Query(ctx, sessionID, turnID)
	if err != nil {
		return false, err
	}
	var one int
	err = scanOne(rows, &one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (b *DataFlowBackend) save(ctx context.Context, sessionID string, turn driver.PreparedTurn, begun time.Time) (driver.Saved, error) {
	t := &turn.Turn
	var metaArg any
	if turn.Metadata != nil {
		metaArg = string(turn.Metadata)
	}
	tokens := int64(t.Tokens())
	at := now()
	return b.store.save(ctx, sessionID, turn, metaArg, tokens, at, begun)
}

// insert runs a save's insert of n message rows, failing with errDuplicate
// unless it stored them all (the rows of a held turn are skipped).
func (b *DataFlowBackend) insert(ctx context.Context, tx *dataflow.Tx, n int, args []any) error {
	res, err := b.insertRows(n, false).ExecTx(ctx, tx, args...)
	if err != nil {
		return err
	}
	stored, err := res.RowsAffected()
	switch {
	case err != nil:
		return err
	case stored != int64(n):
		return errDuplicate
	}
	return nil
}

// rowArgs appends the arguments of an insert of msgs (insertRows) as rows
// of one turn, from position pos on: per row the messageColumns, the rows
// carrying their search text where the index reads them (PostgreSQL).
// With compact keys a derived message ID is stored NULL (storedID), and
// each row binds three more values for the insert's check that the
// session does not hold its ID in the other form: the ID, and the place
// whose derived ID it has (NULL for none).
func (b *DataFlowBackend) rowArgs(args []any, sessionID string, seq int64, pos int32, turnID string, msgs []driver.PreparedMessage, before int64, turnMeta any, at time.Time) []any {
	search := b.store.indexInRows()
	if args == nil {
		width := 17
		if b.compact {
			width = 20
		}
		args = make([]any, 0, width*len(msgs))
	}
	for i := range msgs {
		m := &msgs[i]
		var meta any
		if i == 0 {
			meta = turnMeta
		}
		id, lookTurn, lookPos := b.storedID(m.ID, turnID, pos+int32(i))
		args = append(args, sessionID, seq, pos+int32(i), turnID, id, string(m.Role), m.Content, m.Name,
			jsonArg(m.ToolCallsJSON), m.ToolCallID, jsonArg(m.PartsJSON), jsonArg(m.MetadataJSON),
			int64(m.Tokens), before, meta, at, nil)
		if search {
			args[len(args)-1] = searchArg(m.Content)
		}
		if b.compact {
			args = append(args, m.ID, lookTurn, lookPos)
		}
	}
	return args
}

// jsonArg binds stored JSON as text, or NULL for none.
func jsonArg(data []byte) any {
	if data == nil {
		return nil
	}
	return string(data)
}

// Append adds msgs to the session's turn turnID, atomically, skipping every
// message whose ID the session holds already. Messages not made by
// driver.PrepareMessages are validated first. On PostgreSQL an append to
// the newest turn is one statement; any other append is one transaction,
// which also moves the token counts of the later turns so token windows
// stay exact. It implements driver.Backend.
func (b *DataFlowBackend) Append(ctx context.Context, sessionID, turnID string, msgs []driver.PreparedMessage) (driver.Saved, error) {
	if err := b.check(sessionID); err != nil {
		return driver.Saved{}, err
	}
	msgs, err := preparedMessages(msgs)
	if err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	if err := b.upgraded(ctx, nil); err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	switch saved, done, err := b.store.appendNewest(ctx, sessionID, turnID, msgs); {
	case err != nil:
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	case done:
		return saved, nil
	}
	saved, err := b.appendInTx(ctx, sessionID, turnID, msgs)
	if err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	b.queued(ctx, sessionID, saved.Messages)
	return saved, nil
}

// appendInTx is Append in a transaction: the session row locked, the turn
// found, its new rows inserted, the session and the later turns' counts
// moved.
func (b *DataFlowBackend) appendInTx(ctx context.Context, sessionID, turnID string, msgs []driver.PreparedMessage) (driver.Saved, error) {
	var saved driver.Saved
	index, err := b.indexed(ctx)
	if err != nil {
		return driver.Saved{}, err
	}
	err = b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		saved = driver.Saved{}
		if err := b.store.lockSessionTx(ctx, tx, sessionID, turnID); err != nil {
			return err
		}
		var seq, before int64
		var at dataflow.Time
		var last int32
		rows, err := b.findTurn.QueryTx(ctx, tx, sessionID, turnID)
		if err != nil {
			return err
		}
		if err := scanOne(rows, &seq, &before, &at, &last); errors.Is(err, sql.ErrNoRows) {
			return b.appendMissing(ctx, tx, sessionID, turnID)
		} else if err != nil {
			return err
		}
		// A fork keeps the turns it shares as they were when it was made:
		// forks sharing this session's rows get their copies first (one
		// index probe when there are none).
		if err := b.detachTx(ctx, tx, []string{sessionID}, index); err != nil {
			return err
		}
		res, err := b.insertRows(len(msgs), true).ExecTx(ctx, tx, b.rowArgs(nil, sessionID, seq, last+1, turnID, msgs, before, nil, at.Time)...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		stored := []storedRun{{pos: last + 1, msgs: msgs}}
		if int(n) != len(msgs) { // some IDs were held: which rows went in
			if stored, err = b.storedOf(ctx, tx, sessionID, seq, last, msgs); err != nil {
				return err
			}
		}
		var tokens int64
		for _, r := range stored {
			for i := range r.msgs {
				tokens += int64(r.msgs[i].Tokens)
			}
		}
		if index {
			for i := range stored {
				if err := b.store.indexTx(ctx, tx, sessionID, seq, stored[i].pos, stored[i].msgs); err != nil {
					return err
				}
			}
		}
		rows, err = b.bumpSession.QueryTx(ctx, tx, tokens, now(), sessionID)
		if err != nil {
			return err
		}
		var count, version int64
		if err := scanOne(rows, &count, &version); err != nil {
			return err
		}
		if seq < count {
			if _, err := b.shiftBefore.ExecTx(ctx, tx, tokens, sessionID, seq); err != nil {
				return err
			}
		}
		saved = driver.Saved{Stored: true, Seq: int(seq), Version: reported(version), Messages: int(n)}
		return nil
	}, b.sessions, b.messages)
	return saved, err
}

// storedRun is a run of an append's messages stored at consecutive
// positions from pos.
type storedRun struct {
	pos  int32
	msgs []driver.PreparedMessage
}

// storedOf returns which of msgs an append inserted after position last of
// turn seq (the others' IDs were held), as runs at their positions.
func (b *DataFlowBackend) storedOf(ctx context.Context, tx *dataflow.Tx, sessionID string, seq int64, last int32, msgs []driver.PreparedMessage) ([]storedRun, error) {
	st := b.stmt("storedof", func() *dataflow.Stmt {
		return b.db.NewStmt(`SELECT pos FROM `+MessagesTable+` WHERE session_id = ? AND seq = ? AND pos > ?`, b.messages)
	})
	rows, err := st.QueryTx(ctx, tx, sessionID, seq, last)
	if err != nil {
		return nil, err
	}
	in := make(map[int32]bool)
	for rows.Next() {
		var pos int32
		if err := rows.Scan(&pos); err != nil {
			rows.Close()
			return nil, err
		}
		in[pos] = true
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var runs []storedRun
	for i := range msgs {
		pos := last + 1 + int32(i)
		if !in[pos] {
			continue
		}
		if k := len(runs); k > 0 && runs[k-1].pos+int32(len(runs[k-1].msgs)) == pos {
			runs[k-1].msgs = append(runs[k-1].msgs, msgs[i])
			continue
		}
		runs = append(runs, storedRun{pos: pos, msgs: []driver.PreparedMessage{msgs[i]}})
	}
	return runs, nil
}

// preparedMessages returns msgs validated, unless PrepareMessages made
// them (their IDs are set then).
func preparedMessages(msgs []driver.PreparedMessage) ([]driver.PreparedMessage, error) {
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%w: no messages", driver.ErrInvalidTurn)
	}
	for i := range msgs {
		if msgs[i].ID == "" {
			raw := make([]driver.Message, len(msgs))
			for j := range msgs {
				raw[j] = msgs[j].Message
			}
			return driver.PrepareMessages(raw, driver.DefaultMaxMessageBytes, nil)
		}
	}
	return msgs, nil
}

// firstVersion is the version column of a new session row: random, so that
// a session cleared and created again does not repeat the versions of its
// earlier life, and small enough never to overflow.
func firstVersion() int64 { return rand.Int64N(1<<62) + 1 }

// reported is the driver.Version of a stored version column. Rows written
// before the column existed hold 0; shifting by one keeps every stored
// session apart from driver.NoSession.
func reported(column int64) driver.Version { return driver.Version(column + 1) }

func scanOne(rows *sql.Rows, dest ...any) error {
	defer rows.Close()
	for !rows.Next() {
		// A text of several statements (a MySQL form, see
		// statementForms) yields its row from its last result.
		if !rows.NextResultSet() {
			if err := rows.Err(); err != nil {
				return err
			}
			return sql.ErrNoRows
		}
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Close()
}

// Load returns the session's version and, unless it is q.Known, the window
// q asks for, exactly, in one statement. It implements driver.Backend.
func (b *DataFlowBackend) Load(ctx context.Context, sessionID string, q driver.WindowQuery) (driver.Window, driver.Version, error) {
	if err := b.check(sessionID); err != nil {
		return driver.Window{}, 0, err
	}
	if err := checkQuery(q); err != nil {
		return driver.Window{}, 0, err
	}
	if err := b.upgraded(ctx, q.Counter); err != nil {
		return driver.Window{}, 0, fmt.Errorf("backend: %w", err)
	}
	w, v, err := b.load(ctx, sessionID, q)
	if err != nil {
		return driver.Window{}, 0, fmt.Errorf("backend: %w", err)
	}
	if v == q.Known {
		return driver.Window{}, v, nil
	}
	// The statement's range may hold more turns than fit (a budget's
	// first turn is over it): cut them here.
	return driver.TrimWindow(w, q.MaxTurns, q.TokenBudget), v, nil
}

// writeOutcome is dataflow.WriteOutcome, logging an unknown outcome.
func (b *DataFlowBackend) writeOutcome(ctx context.Context, op string, err error) error {
	err = dataflow.WriteOutcome(ctx, err)
	if errors.Is(err, dataflow.ErrOutcomeUnknown) {
		b.log.LogAttrs(ctx, slog.LevelError, "turnkeep: write outcome unknown", slog.String("op", op), slog.Any("error", err))
	}
	return err
}

// EngineStats reports the Stats of the backend's DB by name (see
// driver.EngineReporter): ensure_calls, fast_path_hits, ensure_runs,
// migrations_applied, ensure_failures and retries; and load_rereads, the
// windows and history pages read again because a read had a hole (see
// readWhole).
func (b *DataFlowBackend) EngineStats() map[string]uint64 {
	if b == nil || b.db == nil {
		return nil
	}
	s := b.db.Stats()
	return map[string]uint64{
		"ensure_calls":       s.EnsureCalls,
		"fast_path_hits":     s.FastPathHits,
		"ensure_runs":        s.EnsureRuns,
		"migrations_applied": s.MigrationsApplied,
		"ensure_failures":    s.Failures,
		"retries":            s.Retries,
		"load_rereads":       b.rereads.Load(),
	}
}

// loadReads bounds the reads of one window or history page that has a
// hole (see readWhole).
const loadReads = 3

// readWhole runs read, a read of a range of a session's turns that
// reports whether the turns it read are whole, again while they are not,
// up to loadReads reads in all where the store has holey reads (once
// elsewhere), and returns the last read's error.
//
// One statement reads one snapshot, and the turns of a session are
// numbered without a gap, so a range read is whole on SQLite and
// PostgreSQL. On MariaDB (10.11, InnoDB at REPEATABLE READ) a SELECT that
// ran while one session was saved from 16 connections at once read, about
// once in 30,000 to 50,000 windows, the session row and the messages of a
// save without those of the save or two just before it, whose lock the
// save had waited for; the plainest join of the two tables read the same
// (TestDataFlowBackendConcurrentMixed caught it). Each time the missing
// saves were still being committed (none had returned to its caller), and
// a statement a millisecond or two later read them. A window cached with
// such a hole would stay wrong until the session's next write, and a
// history page with one would skip a turn for good.
func (b *DataFlowBackend) readWhole(ctx context.Context, read func() (whole bool, err error)) error {
	for n := 1; ; n++ {
		whole, err := read()
		if err != nil || whole || n == loadReads || !b.store.holeyReads() {
			return err
		}
		b.rereads.Add(1)
		select { // the saves whose rows were missing are committing
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(n) * time.Millisecond):
		}
	}
}

// load runs the load statement: the window and the version; again while
// the window has a hole (readWhole), the last read returned as it is.
func (b *DataFlowBackend) load(ctx context.Context, sessionID string, q driver.WindowQuery) (w driver.Window, v driver.Version, err error) {
	err = b.readWhole(ctx, func() (bool, error) {
		var err error
		w, v, err = b.loadOnce(ctx, sessionID, q)
		return v == q.Known || whole(w, q), err
	})
	if err != nil {
		return driver.Window{}, 0, err
	}
	return w, v, nil
}

// whole reports whether w, as the load statement read it (before
// TrimWindow), holds the newest turns of its count without a gap: its
// sequences consecutive up to the count, and a turn window as many turns
// as its limit and the count allow.
func whole(w driver.Window, q driver.WindowQuery) bool {
	n := len(w.Turns)
	if n == 0 {
		return w.TurnCount == 0
	}
	if w.Turns[n-1].Seq != w.TurnCount || w.Turns[n-1].Seq-w.Turns[0].Seq != n-1 {
		return false
	}
	return q.TokenBudget > 0 || n == min(w.TurnCount, q.MaxTurns)
}

// loadOnce runs the load statement once.
func (b *DataFlowBackend) loadOnce(ctx context.Context, sessionID string, q driver.WindowQuery) (driver.Window, driver.Version, error) {
	// A read is safe to retry when a pooled connection turns out to have
	// died since its last use (the server restarted or terminated it).
	if q.Summary {
		return b.loadSummary(ctx, sessionID, q)
	}
	var rows *sql.Rows
	var err error
	if q.TokenBudget > 0 {
		rows, err = b.loadBudget.Query(ctx, int64(q.Known)-1, q.MaxTurns, q.TokenBudget, sessionID)
	} else {
		rows, err = b.loadWindow.Query(ctx, int64(q.Known)-1, q.MaxTurns, sessionID)
	}
	if err != nil {
		return driver.Window{}, 0, err
	}
	return scanWindow(rows, q, nil)
}

// scanWindow reads the rows of the load statement: no row for a session
// that does not exist; else the session's count and version on every row,
// with one message per row, or none when the messages were skipped.
//
// The statement has no ORDER BY, so that no plan ever sorts on the server:
// an index scan yields key order, and the rows are sorted here only when a
// plan yielded them otherwise (PostgreSQL may read a small table whole, in
// heap order).
//
// lead are destinations of columns before the window's (the summary's),
// and onRow, when not nil, is called after every row is scanned.
func scanWindow(rows *sql.Rows, q driver.WindowQuery, onRow func(), lead ...any) (driver.Window, driver.Version, error) {
	defer rows.Close()
	var (
		w       driver.Window
		v       = driver.NoSession
		msgs    []messageRow
		sorted  = true
		count   int64
		version int64
		// Scanned into once per row and reused: declared in the loop they
		// would escape, a few allocations a row.
		seq                                      sql.NullInt64
		pos                                      sql.NullInt32
		tokens                                   sql.NullInt64
		turnID, msgID, role, content, name, tcID sql.NullString
		calls, parts, msgMeta, meta              sql.RawBytes // valid until the next row: copied if present
		at                                       dataflow.Time
		dest                                     = []any{&count, &version, &seq, &pos, &turnID, &msgID, &role, &content, &name, &calls, &tcID, &parts, &msgMeta, &tokens, &meta, &at}
	)
	if len(lead) > 0 {
		dest = append(lead, dest...)
	}
	next := func() bool { // a text of several statements (MySQL's chainQuery) yields its rows last
		for !rows.Next() {
			if !rows.NextResultSet() {
				return false
			}
		}
		return true
	}
	for next() {
		if err := rows.Scan(dest...); err != nil {
			return driver.Window{}, 0, err
		}
		if onRow != nil {
			onRow()
		}
		w.TurnCount, v = int(count), reported(version)
		if !seq.Valid { // the session row alone: its messages were skipped
			continue
		}
		r := messageRow{seq: seq.Int64, pos: pos.Int32, turnID: turnID.String, at: at.Time,
			msg: driver.Message{ID: messageID(msgID.String, msgID.Valid, turnID.String, pos.Int32), Role: driver.Role(role.String), Content: content.String, Name: name.String,
				ToolCallID: tcID.String, Tokens: int(tokens.Int64)},
			calls: cloneJSON(calls), parts: cloneJSON(parts), msgMeta: cloneJSON(msgMeta), meta: cloneJSON(meta)}
		if n := len(msgs); n > 0 && !msgs[n-1].before(&r) {
			sorted = false
		}
		if msgs == nil {
			msgs = make([]messageRow, 0, 2*windowTurnsHint(q, count))
		}
		msgs = append(msgs, r)
	}
	if err := rows.Err(); err != nil {
		return driver.Window{}, 0, err
	}
	if !sorted {
		slices.SortFunc(msgs, func(a, b messageRow) int {
			return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.pos, b.pos))
		})
	}
	if len(msgs) > 0 {
		w.Turns = make([]driver.Turn, 0, min(windowTurnsHint(q, count), len(msgs)))
	}
	for i := range msgs {
		r := &msgs[i]
		if i == 0 || r.seq != msgs[i-1].seq { // a turn's messages share its sequence
			w.Turns = append(w.Turns, driver.Turn{ID: r.turnID, Timestamp: r.at.UTC(), Seq: int(r.seq)})
		}
		t := &w.Turns[len(w.Turns)-1]
		if r.meta != nil {
			if err := json.Unmarshal(r.meta, &t.Metadata); err != nil {
				return driver.Window{}, 0, fmt.Errorf("decode metadata of turn %s: %w", r.turnID, err)
			}
		}
		m := r.msg
		if err := driver.DecodeMessage(&m, r.calls, r.parts, r.msgMeta); err != nil {
			return driver.Window{}, 0, err
		}
		t.Messages = append(t.Messages, m)
		w.Tokens += m.Tokens
	}
	for i := range w.Turns {
		driver.FillShorthand(&w.Turns[i])
	}
	return w, v, rows.Close()
}

// budgetTurnsHint is how many turns a budget window's buffers are sized
// for before they grow: its turn limit says little of its length, and
// sizing by it made a window of 10 turns under a limit of 1,000 allocate
// 380 KB.
const budgetTurnsHint = 32

// windowTurnsHint is the turns q's window is expected to hold, of a
// session of count turns: the turn limit, or with a budget at most
// budgetTurnsHint.
func windowTurnsHint(q driver.WindowQuery, count int64) int {
	n := min(q.MaxTurns, int(count))
	if q.TokenBudget > 0 {
		n = min(n, budgetTurnsHint)
	}
	return max(n, 0)
}

func cloneJSON(b sql.RawBytes) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

// messageRow is one message as the load statement reads it.
type messageRow struct {
	seq                         int64
	pos                         int32
	turnID                      string
	at                          time.Time
	msg                         driver.Message
	calls, parts, msgMeta, meta []byte
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
	index, err := b.indexed(ctx)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	sums, tables, err := b.erasing(ctx, b.sessions, b.messages)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	at := now()
	err = b.runTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		if _, err := b.lockSession.ExecTx(ctx, tx, sessionID, tenantOf(sessionID), at, at); err != nil {
			return err
		}
		if err := b.detachTx(ctx, tx, []string{sessionID}, index); err != nil {
			return err
		}
		if err := b.store.unindexKeysTx(ctx, tx, []string{sessionID}); err != nil {
			return err
		}
		if _, err := b.messages.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"session_id": sessionID}); err != nil {
			return err
		}
		if sums {
			if err := b.deleteSummaryTx(ctx, tx, sessionID); err != nil {
				return err
			}
		}
		_, err := b.sessions.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"id": sessionID})
		return err
	}, tables...)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	return nil
}

// Err returns dataflow.ErrClosed once the database is closed, and
// driver.ErrClosed for a backend not made by NewDataFlowBackend; nil
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
	return driver.ValidateSessionKey(sessionID)
}

// tenantOf is the tenant of a session key.
func tenantOf(key string) string {
	t, _ := driver.ParseSessionKey(key)
	return t
}

// errNoDB is what a backend not made by NewDataFlowBackend returns.
var errNoDB = fmt.Errorf("backend: %w: not made by NewDataFlowBackend", driver.ErrClosed)
