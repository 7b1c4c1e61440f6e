package tests

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"modernc.org/sqlite"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// Hostile input (issue 4, item 6). Every public entry point gets input an
// attacker or a careless caller could send. Each case ends one of two ways:
// a typed error (errors.Is), or the input is stored verbatim and read back
// byte for byte. Never a raw error from the database, never a panic, and
// the row counts show that nothing else changed.

// hostileStrings are SQL-injection, quoting, escaping and LIKE probes. None
// holds a NUL or invalid UTF-8, so each is valid as a session ID, a turn ID,
// a message, a metadata key and a metadata value.
var hostileStrings = []string{
	`'; DROP TABLE turnkeep_messages; --`,
	`'; DROP TABLE turnkeep_sessions; --`,
	`" OR 1=1 --`,
	`' OR '1'='1`,
	`') OR ('a'='a`,
	`'); DELETE FROM turnkeep_messages WHERE ('1'='1`,
	`1; UPDATE turnkeep_sessions SET turn_count = 0`,
	`id; DROP TABLE x`,
	`$1`, `$2::text`, `$$`, `$tag$ x $tag$`, `?`, `??`, `:name`, `@p1`,
	"\x27", `''`, `"`, `""`, "`",
	`\`, `\\`, `\'`, `\"`, `\x27`, `\0`, `\n`, `\u0000`, `E'\x41'`,
	`%`, `_`, `%_`, `%%`, `a%b_c`, `\%`, `\_`, `[a-z]*`, `*`,
	`/*`, `*/`, `--`, `;`, `NULL`, `null`, `true`, `0`, `-1`,
	`{"a":1}`, `[]`, `<script>alert(1)</script>`,
	"line1\nline2\r\n\ttab\vvt\ffeed",
	"\x01\x1b[31mred\x1b[0m\x7f",
	"\u202eevil\u200b\ufeff",
	"\ufffd", "\u2028\u2029", "😀日本語", "ɐ́́́",
	strings.Repeat("'", 100),
	strings.Repeat(`\`, 101),
}

// hostileUnknownColumns are filter, order and set keys that no model has.
var hostileUnknownColumns = []string{
	`id; DROP TABLE x`, `id; DROP TABLE x; --`, `name OR 1=1`, `1=1`, `1`, `*`,
	`"name"`, `name"`, `'name'`, "`name`", `name--`, `name/*`, `NAME`, ` name`,
	`name `, ``, `-`, `--name`, `hostile_rows.name`, `turnkeep_messages.session_id`,
	`m.seq`, `$1`, `?`, "name\x00", "\xff", `(SELECT 1)`,
}

// hostileTimeout bounds each test, so a hang fails it instead of the run.
const hostileTimeout = 2 * time.Minute

// hostileNow is the Timestamp of the cases: fixed, non-zero and finer than
// a microsecond, so the expected turn is known in advance.
var hostileNow = time.Date(2025, 6, 1, 12, 30, 45, 123456789, time.UTC)

// hostileStmts is a query hook counting every statement, so a test can
// prove that rejected input never reached the database.
type hostileStmts struct{ n atomic.Int64 }

var _ bun.QueryHook = (*hostileStmts)(nil)

func (h *hostileStmts) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}
func (h *hostileStmts) AfterQuery(context.Context, *bun.QueryEvent) { h.n.Add(1) }

// hostileNoDBError fails the test if err carries a raw error of a database
// driver: bad input must be refused by the library, not by the database.
func hostileNoDBError(t *testing.T, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.Falsef(t, errors.As(err, &pgErr), "raw PostgreSQL error: %v", err)
	var sqliteErr *sqlite.Error
	require.Falsef(t, errors.As(err, &sqliteErr), "raw SQLite error: %v", err)
}

// hostileCounts counts the rows of the backend's tables. The queries fail
// if a table was dropped.
type hostileCounts struct{ messages, sessions int }

func hostileCount(ctx context.Context, t *testing.T, db *dataflow.DB, table string) int {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SELECT count(*) FROM "+table)
	require.NoError(t, err, "count %s: the table must still exist", table)
	defer rows.Close()
	require.True(t, rows.Next(), "count %s", table)
	var n int
	require.NoError(t, rows.Scan(&n))
	require.NoError(t, rows.Err())
	return n
}

// hostileEnv is one database on one dialect with every conversation entry
// point over it.
type hostileEnv struct {
	ctx     context.Context
	dialect string
	db      *dataflow.DB
	stmts   *hostileStmts
	sides   map[int]*hostileSide // by max message bytes; 0 is the default
	victim  memory.Turn          // the turn stored in hostileVictim, as PrepareTurn made it
}

// hostileSide is every entry point configured with one message size limit.
// inMem is nil unless the limit is the default, the only one it has.
type hostileSide struct {
	maxBytes int
	be       *backend.DataFlowBackend
	mem      *memory.PersistentBufferMemory // cached, over be
	buf      *memory.BufferMemory
	inMem    *backend.InMemoryBackend
}

// hostileVictim is a session stored before any hostile input; it must come
// through every case untouched.
const hostileVictim = "victim"

func newHostileEnv(t *testing.T, d dbtest.Dialect) *hostileEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hostileTimeout)
	t.Cleanup(cancel)
	stmts := &hostileStmts{}
	db, err := dataflow.Open(ctx, d.URL(t), dataflow.WithQueryHook(stmts))
	require.NoError(t, err, "open")
	t.Cleanup(func() { _ = db.Close() })
	e := &hostileEnv{ctx: ctx, dialect: d.Name, db: db, stmts: stmts, sides: map[int]*hostileSide{}}

	victim := memory.Turn{ID: "victim-turn", User: "the victim's question", Agent: "the victim's answer",
		Timestamp: hostileNow, Metadata: map[string]any{"k": "v"}}
	require.NoError(t, e.side(t, 0).mem.SaveTurn(ctx, hostileVictim, victim))
	e.victim = hostilePrepared(t, victim, 0)
	e.checkVictim(t)
	return e
}

// saveDirect saves turn to the side's backend directly, as a program
// without a memory would: prepared at the side's limit when it has one
// (the limit is a memory's, carried by the prepared turn), else validated
// by the backend within the default.
func (s *hostileSide) saveDirect(ctx context.Context, session string, turn memory.Turn) error {
	if s.maxBytes == 0 {
		return storeTurn(ctx, s.be, session, turn)
	}
	p, err := driver.Prepare(turn, time.Now(), s.maxBytes, nil)
	if err != nil {
		return err
	}
	_, err = s.be.Save(ctx, session, p)
	return err
}

// side returns the entry points with the given message size limit.
func (e *hostileEnv) side(t *testing.T, maxBytes int) *hostileSide {
	t.Helper()
	if s := e.sides[maxBytes]; s != nil {
		return s
	}
	s := &hostileSide{maxBytes: maxBytes}
	var memOpts []memory.Option
	if maxBytes > 0 {
		memOpts = append(memOpts, memory.WithMaxMessageBytes(maxBytes))
	} else {
		s.inMem = backend.NewInMemoryBackend()
	}
	var err error
	s.be, err = backend.NewDataFlowBackend(e.db)
	require.NoError(t, err)
	s.mem, err = memory.NewPersistentBufferMemory(s.be, memOpts...)
	require.NoError(t, err)
	s.buf = memory.NewBufferMemory(memOpts...)
	e.sides[maxBytes] = s
	return s
}

func (e *hostileEnv) counts(t *testing.T) hostileCounts {
	t.Helper()
	return hostileCounts{
		messages: hostileCount(e.ctx, t, e.db, backend.MessagesTable),
		sessions: hostileCount(e.ctx, t, e.db, backend.SessionsTable),
	}
}

// checkVictim proves the victim session is exactly as stored, in the
// database and in the cache.
func (e *hostileEnv) checkVictim(t *testing.T) {
	t.Helper()
	s := e.side(t, 0)
	w, err := readWindow(e.ctx, s.be, hostileVictim, 10)
	require.NoError(t, err)
	hostileRequireWindow(t, []memory.Turn{e.victim}, w)
	w, err = s.mem.LoadContext(e.ctx, hostileVictim)
	require.NoError(t, err)
	hostileRequireWindow(t, []memory.Turn{e.victim}, w)
}

// hostilePrepared is the turn PrepareTurn makes of turn: what a read must
// return.
func hostilePrepared(t *testing.T, turn memory.Turn, maxBytes int) memory.Turn {
	t.Helper()
	want, _, err := driver.PrepareTurn(turn, hostileNow, maxBytes)
	require.NoError(t, err, "PrepareTurn")
	return want
}

// hostileRequireWindow requires w to hold exactly want, byte for byte.
func hostileRequireWindow(t *testing.T, want []memory.Turn, w memory.Window) {
	t.Helper()
	require.Equal(t, len(want), w.TurnCount, "turn count")
	require.Len(t, w.Turns, len(want))
	for i := range want {
		got := w.Turns[i]
		require.Equal(t, want[i].ID, got.ID, "turn %d id", i)
		require.Equal(t, []byte(want[i].User), []byte(got.User), "turn %d user", i)
		require.Equal(t, []byte(want[i].Agent), []byte(got.Agent), "turn %d agent", i)
		require.Truef(t, want[i].Timestamp.Equal(got.Timestamp), "turn %d timestamp: got %v; want %v", i, got.Timestamp, want[i].Timestamp)
		require.Equal(t, time.UTC, got.Timestamp.Location(), "turn %d timestamp location", i)
		require.Equal(t, want[i].Metadata, got.Metadata, "turn %d metadata", i)
	}
}

// hostileCase is one input to SaveTurn.
type hostileCase struct {
	name     string
	session  string
	turn     memory.Turn
	maxBytes int   // the message size limit of the entry points; 0: default
	want     error // nil: stored verbatim; otherwise the error every entry point returns
}

// hostileNested returns metadata nested depth levels deep (JSON objects
// and arrays both count as a level): maps, or arrays inside one map.
func hostileNested(depth int, arrays bool) map[string]any {
	var v any = "leaf"
	for range depth - 1 {
		if arrays {
			v = []any{v}
		} else {
			v = map[string]any{"k": v}
		}
	}
	return map[string]any{"k": v}
}

// hostileJSON is a json.Marshaler emitting fixed bytes, as a buggy or
// malicious Marshaler in the caller's metadata could.
type hostileJSON string

func (h hostileJSON) MarshalJSON() ([]byte, error) { return []byte(h), nil }

// hostileJSONError is a json.Marshaler that fails.
type hostileJSONError struct{}

func (hostileJSONError) MarshalJSON() ([]byte, error) { return nil, errors.New("refused") }

// hostileStoredCases are inputs that must be stored verbatim: every hostile
// string as a session ID, as the messages, as metadata keys and values, and
// as a turn ID, plus the limits themselves.
func hostileStoredCases() []hostileCase {
	var cs []hostileCase
	for i, s := range hostileStrings {
		id := fmt.Sprintf("turn-%d", i)
		cs = append(cs,
			hostileCase{name: fmt.Sprintf("session/%d", i), session: s,
				turn: memory.Turn{ID: id, User: "u", Agent: "a"}},
			hostileCase{name: fmt.Sprintf("content/%d", i), session: fmt.Sprintf("content-%d", i),
				turn: memory.Turn{ID: id, User: s, Agent: s + "\n" + s}},
			hostileCase{name: fmt.Sprintf("metadata/%d", i), session: fmt.Sprintf("metadata-%d", i),
				turn: memory.Turn{ID: id, User: "u", Metadata: map[string]any{
					s: s, "nested": map[string]any{s: []any{s, 1.5, true, nil}}}}},
		)
		if len(s) <= memory.MaxTurnIDBytes {
			cs = append(cs, hostileCase{name: fmt.Sprintf("turnid/%d", i), session: fmt.Sprintf("turnid-%d", i),
				turn: memory.Turn{ID: s, Agent: s}})
		}
	}
	at64 := strings.Repeat("x", 64)
	cs = append(cs,
		hostileCase{name: "limits/session-255-bytes", session: strings.Repeat("s", memory.MaxSessionIDBytes),
			turn: memory.Turn{ID: "t", User: "u"}},
		hostileCase{name: "limits/session-255-bytes-multibyte", session: strings.Repeat("é", 127) + "s",
			turn: memory.Turn{ID: "t", User: "u"}},
		hostileCase{name: "limits/turnid-128-bytes", session: "turnid-128",
			turn: memory.Turn{ID: strings.Repeat("i", memory.MaxTurnIDBytes), User: "u"}},
		hostileCase{name: "limits/user-at-small-limit", session: "small-user", maxBytes: 64,
			turn: memory.Turn{ID: "t", User: at64, Agent: at64}},
		hostileCase{name: "limits/user-at-small-limit-4-byte-runes", session: "small-runes", maxBytes: 64,
			turn: memory.Turn{ID: "t", User: strings.Repeat("😀", 16)}},
		hostileCase{name: "limits/metadata-json-at-small-limit", session: "small-meta", maxBytes: 64,
			turn: memory.Turn{ID: "t", User: "u", Metadata: map[string]any{"k": strings.Repeat("v", 64-len(`{"k":""}`))}}},
		hostileCase{name: "limits/user-at-default-limit", session: "big-user",
			turn: memory.Turn{ID: "t", User: strings.Repeat("u", memory.DefaultMaxMessageBytes), Agent: "a"}},
		hostileCase{name: "metadata/depth-50", session: "depth-50",
			turn: memory.Turn{ID: "t", User: "u", Metadata: hostileNested(50, false)}},
		hostileCase{name: "metadata/array-depth-50", session: "array-depth-50",
			turn: memory.Turn{ID: "t", User: "u", Metadata: hostileNested(50, true)}},
		hostileCase{name: "metadata/numbers", session: "numbers",
			turn: memory.Turn{ID: "t", User: "u", Metadata: map[string]any{
				"max": math.MaxFloat64, "tiny": math.SmallestNonzeroFloat64, "negzero": math.Copysign(0, -1),
				"int": int64(1<<53 + 1), "uint": uint64(math.MaxUint64), "neg": -1e300}}},
		hostileCase{name: "metadata/odd-keys", session: "odd-keys",
			turn: memory.Turn{ID: "t", User: "u", Metadata: map[string]any{
				"": "", "\ufffd": "\ufffd", "<&>": "<&>", `\u0000`: `\ud800`, "\u2028": []any{}}}},
		hostileCase{name: "timestamp/year-1", session: "year-1",
			turn: memory.Turn{ID: "t", User: "u", Timestamp: time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)}},
		hostileCase{name: "timestamp/year-9999", session: "year-9999",
			turn: memory.Turn{ID: "t", User: "u", Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
		hostileCase{name: "timestamp/far-east-zone", session: "zone",
			turn: memory.Turn{ID: "t", User: "u", Timestamp: time.Date(2025, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 14*3600))}},
	)
	for i := range cs {
		if cs[i].turn.Timestamp.IsZero() {
			cs[i].turn.Timestamp = hostileNow // so that the expected turn is known
		}
	}
	return cs
}

// hostileRejectedCases are inputs every entry point must refuse.
func hostileRejectedCases() []hostileCase {
	ok := memory.Turn{ID: "t", User: "u", Agent: "a"}
	withMeta := func(m map[string]any) memory.Turn { return memory.Turn{ID: "t", User: "u", Metadata: m} }
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	cs := []hostileCase{
		{name: "session/empty", session: "", turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/invalid-utf8", session: "s\xff", turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/nul", session: "a\x00b", turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/only-nul", session: "\x00", turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/overlong-nul", session: "a\xc0\x80", turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/utf8-surrogate", session: "\xed\xa0\x80", turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/beyond-max-rune", session: "\xf4\x90\x80\x80", turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/256-bytes", session: strings.Repeat("s", memory.MaxSessionIDBytes+1), turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/256-bytes-multibyte", session: strings.Repeat("é", 128), turn: ok, want: memory.ErrInvalidSessionID},
		{name: "session/injection-with-nul", session: "'; DROP TABLE turnkeep_messages; --\x00", turn: ok, want: memory.ErrInvalidSessionID},

		{name: "turn/empty", session: "s", turn: memory.Turn{ID: "t"}, want: memory.ErrInvalidTurn},
		{name: "turn/user-invalid-utf8", session: "s", turn: memory.Turn{User: "\xff"}, want: memory.ErrInvalidTurn},
		{name: "turn/user-nul", session: "s", turn: memory.Turn{User: "a\x00"}, want: memory.ErrInvalidTurn},
		{name: "turn/agent-utf8-surrogate", session: "s", turn: memory.Turn{User: "u", Agent: "\xed\xa0\x80"}, want: memory.ErrInvalidTurn},
		{name: "turn/agent-truncated-rune", session: "s", turn: memory.Turn{User: "u", Agent: "日本"[:4]}, want: memory.ErrInvalidTurn},
		{name: "turn/injection-with-nul", session: "s", turn: memory.Turn{User: "'); DROP TABLE x; --\x00"}, want: memory.ErrInvalidTurn},
		{name: "turn/id-nul", session: "s", turn: memory.Turn{ID: "\x00", User: "u"}, want: memory.ErrInvalidTurn},
		{name: "turn/id-invalid-utf8", session: "s", turn: memory.Turn{ID: "\xfe", User: "u"}, want: memory.ErrInvalidTurn},
		{name: "turn/id-129-bytes", session: "s", turn: memory.Turn{ID: strings.Repeat("i", memory.MaxTurnIDBytes+1), User: "u"}, want: memory.ErrInvalidTurn},

		{name: "metadata/key-invalid-utf8", session: "s", turn: withMeta(map[string]any{"\xff": 1}), want: memory.ErrInvalidTurn},
		{name: "metadata/key-nul", session: "s", turn: withMeta(map[string]any{"a\x00": 1}), want: memory.ErrInvalidTurn},
		{name: "metadata/value-nul", session: "s", turn: withMeta(map[string]any{"k": "\x00"}), want: memory.ErrInvalidTurn},
		{name: "metadata/nested-value-invalid-utf8", session: "s", turn: withMeta(map[string]any{"k": []any{map[string]any{"k": "\xfe"}}}), want: memory.ErrInvalidTurn},
		{name: "metadata/depth-10001", session: "s", turn: withMeta(hostileNested(10001, false)), want: memory.ErrInvalidTurn},
		{name: "metadata/array-depth-10001", session: "s", turn: withMeta(hostileNested(10001, true)), want: memory.ErrInvalidTurn},
		{name: "metadata/chan", session: "s", turn: withMeta(map[string]any{"k": make(chan int)}), want: memory.ErrInvalidTurn},
		{name: "metadata/func", session: "s", turn: withMeta(map[string]any{"k": func() {}}), want: memory.ErrInvalidTurn},
		{name: "metadata/complex", session: "s", turn: withMeta(map[string]any{"k": complex(1, 2)}), want: memory.ErrInvalidTurn},
		{name: "metadata/nan", session: "s", turn: withMeta(map[string]any{"k": math.NaN()}), want: memory.ErrInvalidTurn},
		{name: "metadata/+inf", session: "s", turn: withMeta(map[string]any{"k": math.Inf(1)}), want: memory.ErrInvalidTurn},
		{name: "metadata/-inf", session: "s", turn: withMeta(map[string]any{"k": []any{math.Inf(-1)}}), want: memory.ErrInvalidTurn},
		{name: "metadata/cycle", session: "s", turn: withMeta(cyclic), want: memory.ErrInvalidTurn},
		{name: "metadata/marshaler-error", session: "s", turn: withMeta(map[string]any{"k": hostileJSONError{}}), want: memory.ErrInvalidTurn},
		{name: "metadata/marshaler-bad-json", session: "s", turn: withMeta(map[string]any{"k": hostileJSON(`{"a":`)}), want: memory.ErrInvalidTurn},
		{name: "metadata/marshaler-nul-escape", session: "s", turn: withMeta(map[string]any{"k": hostileJSON(`"\u0000"`)}), want: memory.ErrInvalidTurn},
		{name: "metadata/marshaler-lone-surrogate", session: "s", turn: withMeta(map[string]any{"k": hostileJSON(`"\ud800"`)}), want: memory.ErrInvalidTurn},
		{name: "metadata/marshaler-raw-invalid-utf8", session: "s", turn: withMeta(map[string]any{"k": hostileJSON("\"\xff\"")}), want: memory.ErrInvalidTurn},

		{name: "size/user-over-small-limit", session: "s", maxBytes: 64, turn: memory.Turn{User: strings.Repeat("x", 65)}, want: memory.ErrTurnTooLarge},
		{name: "size/agent-over-small-limit", session: "s", maxBytes: 64, turn: memory.Turn{User: "u", Agent: strings.Repeat("😀", 16) + "x"}, want: memory.ErrTurnTooLarge},
		{name: "size/metadata-over-small-limit", session: "s", maxBytes: 64, turn: withMeta(map[string]any{"k": strings.Repeat("v", 65-len(`{"k":""}`))}), want: memory.ErrTurnTooLarge},
		{name: "size/user-over-default-limit", session: "s", turn: memory.Turn{User: strings.Repeat("u", memory.DefaultMaxMessageBytes+1)}, want: memory.ErrTurnTooLarge},
		{name: "size/agent-over-default-limit", session: "s", turn: memory.Turn{User: "u", Agent: strings.Repeat("a", memory.DefaultMaxMessageBytes+1)}, want: memory.ErrTurnTooLarge},
		{name: "size/metadata-over-default-limit", session: "s", turn: withMeta(map[string]any{"k": strings.Repeat("v", memory.DefaultMaxMessageBytes)}), want: memory.ErrTurnTooLarge},

		// Timestamps outside years 1-9999 fit neither database: refused
		// before any SQL.
		{name: "timestamp/year-10000", session: "year-10000", want: memory.ErrInvalidTurn,
			turn: memory.Turn{ID: "t", User: "u", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{name: "timestamp/year-minus-5", session: "year-minus-5", want: memory.ErrInvalidTurn,
			turn: memory.Turn{ID: "t", User: "u", Timestamp: time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{name: "timestamp/year-300000", session: "year-300000", want: memory.ErrInvalidTurn,
			turn: memory.Turn{ID: "t", User: "u", Timestamp: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	return cs
}

// TestHostileInputStoredVerbatim saves every hostile string in every place
// of a turn through PersistentBufferMemory over DataFlowBackend, and reads
// each back byte for byte from the database and from the cache, with row
// counts proving that each save added exactly its own rows and each clear
// removed exactly them.
func TestHostileInputStoredVerbatim(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newHostileEnv(t, d)
		cases := hostileStoredCases()
		stored := make([]bool, len(cases))

		for i, c := range cases {
			t.Run("save/"+c.name, func(t *testing.T) {
				s := e.side(t, c.maxBytes)
				want := hostilePrepared(t, c.turn, c.maxBytes)
				before := e.counts(t)
				err := s.mem.SaveTurn(e.ctx, c.session, c.turn)
				hostileNoDBError(t, err)
				require.NoError(t, err)
				stored[i] = true
				rows := len(want.Messages) // one per message: a user's, an agent's, or both
				require.Equal(t, hostileCounts{before.messages + rows, before.sessions + 1}, e.counts(t), "rows after save")

				w, err := readWindow(e.ctx, s.be, c.session, 10)
				require.NoError(t, err)
				hostileRequireWindow(t, []memory.Turn{want}, w)
				w, err = s.mem.LoadContext(e.ctx, c.session)
				require.NoError(t, err)
				hostileRequireWindow(t, []memory.Turn{want}, w)
				info, err := s.be.SessionInfo(e.ctx, c.session)
				require.NoError(t, err)
				require.Equal(t, 1, info.TurnCount)

				// A retry of the same turn (same ID) stores nothing.
				require.NoError(t, s.mem.SaveTurn(e.ctx, c.session, c.turn))
				require.NoError(t, storeTurn(e.ctx, s.be, c.session, c.turn))
				require.Equal(t, hostileCounts{before.messages + rows, before.sessions + 1}, e.counts(t), "rows after retries")
				e.checkVictim(t)
			})
		}

		// Every session still holds exactly its own turn: no pattern, quote
		// or placeholder in one reached another.
		t.Run("all-intact", func(t *testing.T) {
			n, rows := 0, len(e.victim.Messages)
			for i, c := range cases {
				if !stored[i] {
					continue
				}
				want := hostilePrepared(t, c.turn, c.maxBytes)
				n, rows = n+1, rows+len(want.Messages)
				s := e.side(t, c.maxBytes)
				w, err := readWindow(e.ctx, s.be, c.session, 10)
				require.NoError(t, err, c.name)
				hostileRequireWindow(t, []memory.Turn{want}, w)
			}
			require.Equal(t, hostileCounts{rows, n + 1}, e.counts(t))
			e.checkVictim(t)
		})

		for i, c := range cases {
			if !stored[i] {
				continue
			}
			t.Run("clear/"+c.name, func(t *testing.T) {
				s := e.side(t, c.maxBytes)
				before := e.counts(t)
				require.NoError(t, s.mem.Clear(e.ctx, c.session))
				rows := len(hostilePrepared(t, c.turn, c.maxBytes).Messages)
				require.Equal(t, hostileCounts{before.messages - rows, before.sessions - 1}, e.counts(t), "rows after clear")
				w, err := readWindow(e.ctx, s.be, c.session, 10)
				require.NoError(t, err)
				require.Equal(t, memory.Window{}, w)
				_, err = s.be.SessionInfo(e.ctx, c.session)
				require.ErrorIs(t, err, memory.ErrSessionNotFound)
				e.checkVictim(t)
			})
		}
		require.Equal(t, hostileCounts{len(e.victim.Messages), 1}, e.counts(t), "only the victim is left")
	})
}

// TestHostileInputRejected sends invalid turns and session IDs to every
// entry point: each returns the typed error, runs no SQL and stores
// nothing.
func TestHostileInputRejected(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newHostileEnv(t, d)
		for _, c := range hostileRejectedCases() {
			t.Run(c.name, func(t *testing.T) {
				s := e.side(t, c.maxBytes)
				before := e.counts(t)

				// check runs one entry point: a database-backed one must
				// not reach the database.
				check := func(name string, dbBacked bool, call func() error) {
					t.Helper()
					stmts := e.stmts.n.Load()
					err := call()
					hostileNoDBError(t, err)
					require.ErrorIsf(t, err, c.want, "%s", name)
					if dbBacked {
						require.Equalf(t, stmts, e.stmts.n.Load(), "%s ran SQL for rejected input", name)
					}
				}
				require.True(t, s.inMem != nil || !errors.Is(c.want, memory.ErrInvalidSessionID), "session cases use the default limit")
				check("PersistentBufferMemory.SaveTurn", true, func() error { return s.mem.SaveTurn(e.ctx, c.session, c.turn) })
				check("DataFlowBackend.Save", true, func() error { return s.saveDirect(e.ctx, c.session, c.turn) })
				check("BufferMemory.SaveTurn", false, func() error { return s.buf.SaveTurn(e.ctx, c.session, c.turn) })
				if s.inMem != nil {
					check("InMemoryBackend.SaveTurn", false, func() error { return storeTurn(e.ctx, s.inMem, c.session, c.turn) })
				}
				if errors.Is(c.want, memory.ErrInvalidSessionID) {
					check("PersistentBufferMemory.LoadContext", true, func() error { _, err := s.mem.LoadContext(e.ctx, c.session); return err })
					check("PersistentBufferMemory.Clear", true, func() error { return s.mem.Clear(e.ctx, c.session) })
					check("DataFlowBackend.LoadWindow", true, func() error { _, err := readWindow(e.ctx, s.be, c.session, 10); return err })
					check("DataFlowBackend.ClearSession", true, func() error { return s.be.ClearSession(e.ctx, c.session) })
					check("DataFlowBackend.SessionInfo", true, func() error { _, err := s.be.SessionInfo(e.ctx, c.session); return err })
					check("BufferMemory.LoadContext", false, func() error { _, err := s.buf.LoadContext(e.ctx, c.session); return err })
					check("BufferMemory.Clear", false, func() error { return s.buf.Clear(e.ctx, c.session) })
					check("InMemoryBackend.LoadWindow", false, func() error { _, err := readWindow(e.ctx, s.inMem, c.session, 10); return err })
					check("InMemoryBackend.ClearSession", false, func() error { return s.inMem.ClearSession(e.ctx, c.session) })
					check("InMemoryBackend.SessionInfo", false, func() error { _, err := s.inMem.SessionInfo(e.ctx, c.session); return err })
					s.mem.InvalidateCache(c.session) // must not panic
				}

				after := e.counts(t)
				require.Equal(t, before, after, "rows")
				e.checkVictim(t)
			})
		}
	})
}

// TestHostileInputLargerMemoryLimit puts a memory with a limit larger than
// the default in front of a backend. The memory's limit is the one limit
// (a backend has none of its own): a turn the memory prepared is stored as
// it is, even over the default, and reads back verbatim from the cache and
// the database. A turn given to the backend directly is validated within
// the default: its ErrTurnTooLarge reaches the caller, nothing is written,
// and the memory's cached window stays exact.
func TestHostileInputLargerMemoryLimit(t *testing.T) {
	const limit = 2 * memory.DefaultMaxMessageBytes
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newHostileEnv(t, d)
		be := e.side(t, 0).be
		mem, err := memory.NewPersistentBufferMemory(be, memory.WithMaxMessageBytes(limit))
		require.NoError(t, err)
		first := memory.Turn{ID: "t1", User: "u", Timestamp: hostileNow}
		require.NoError(t, mem.SaveTurn(e.ctx, "s", first))
		w, err := mem.LoadContext(e.ctx, "s") // now cached
		require.NoError(t, err)
		hostileRequireWindow(t, []memory.Turn{hostilePrepared(t, first, limit)}, w)

		// Through the memory: within its limit, so stored.
		before := e.counts(t)
		big := memory.Turn{ID: "t2", User: strings.Repeat("x", memory.DefaultMaxMessageBytes+1), Timestamp: hostileNow}
		err = mem.SaveTurn(e.ctx, "s", big)
		hostileNoDBError(t, err)
		require.NoError(t, err)
		require.Equal(t, hostileCounts{before.messages + 1, before.sessions}, e.counts(t))
		want := []memory.Turn{hostilePrepared(t, first, limit), hostilePrepared(t, big, limit)}
		w, err = mem.LoadContext(e.ctx, "s")
		require.NoError(t, err)
		hostileRequireWindow(t, want, w)
		w, err = readWindow(e.ctx, be, "s", 10)
		require.NoError(t, err)
		hostileRequireWindow(t, want, w)

		// To the backend directly: over the default, so refused.
		before = e.counts(t)
		err = storeTurn(e.ctx, be, "s", memory.Turn{ID: "t3", User: strings.Repeat("x", memory.DefaultMaxMessageBytes+1), Timestamp: hostileNow})
		hostileNoDBError(t, err)
		require.ErrorIs(t, err, memory.ErrTurnTooLarge)
		require.Equal(t, before, e.counts(t))
		w, err = mem.LoadContext(e.ctx, "s")
		require.NoError(t, err)
		hostileRequireWindow(t, want, w)
		e.checkVictim(t)
	})
}

// hostileRow is the model of the dataflow tests.
type hostileRow struct {
	bun.BaseModel `bun:"table:hostile_rows"`

	ID   int64          `bun:"id,pk,autoincrement"`
	Name string         `bun:"name,notnull"`
	Note *string        `bun:"note"`
	N    int64          `bun:"n,notnull"`
	Meta map[string]any `bun:"meta"`
}

// hostileLike reports whether s matches the LIKE pattern as the dialect
// defines it: % any run of characters, _ one character, a backslash
// escaping the next character (ESCAPE '\\' on every dialect); SQLite folds
// ASCII case, PostgreSQL and MySQL (binary collation) are case-sensitive.
func hostileLike(pattern, s string, caseSensitive bool) bool {
	type tok struct {
		r       rune
		literal bool
	}
	var p []tok
	pr := []rune(pattern)
	for i := 0; i < len(pr); i++ {
		if pr[i] == '\\' && i+1 < len(pr) { // ESCAPE '\\' on every dialect
			i++
			p = append(p, tok{pr[i], true})
			continue
		}
		p = append(p, tok{pr[i], false})
	}
	fold := func(r rune) rune {
		if !caseSensitive && 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}
	sr := []rune(s)
	// m[j] reports whether p[:i] matches sr[:j], row by row over i.
	m := make([]bool, len(sr)+1)
	m[0] = true
	for _, t := range p {
		next := make([]bool, len(sr)+1)
		for j := 0; j <= len(sr); j++ {
			switch {
			case !t.literal && t.r == '%':
				next[j] = m[j] || (j > 0 && next[j-1])
			case j == 0:
			case !t.literal && t.r == '_':
				next[j] = m[j-1]
			default:
				next[j] = m[j-1] && fold(t.r) == fold(sr[j-1])
			}
		}
		m = next
	}
	return m[len(sr)]
}

func hostileIDs(rows []hostileRow) []int64 {
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// TestHostileInputDataflow stores hostile values through every dataflow
// write operation, selects them with hostile filter values and LIKE
// patterns, and sends injection-looking column names to every operation
// taking one: values come back verbatim, filters select exactly the rows
// they should, unknown columns are ErrUnknownColumn before any SQL runs,
// and a canary table proves nothing was dropped.
func TestHostileInputDataflow(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, cancel := context.WithTimeout(t.Context(), hostileTimeout)
		defer cancel()
		stmts := &hostileStmts{}
		db, err := dataflow.Open(ctx, d.URL(t), dataflow.WithQueryHook(stmts))
		require.NoError(t, err)
		defer db.Close()
		caseSensitive := d.Name != "sqlite" // PostgreSQL, and MySQL's binary collation

		_, err = db.ExecContext(ctx, "CREATE TABLE x (id integer)")
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, "INSERT INTO x (id) VALUES (1)")
		require.NoError(t, err)
		canary := func(t *testing.T) {
			t.Helper()
			require.Equal(t, 1, hostileCount(ctx, t, db, "x"), "canary table x")
		}

		tbl, err := dataflow.Register[hostileRow](db, dataflow.WithIndex("hostile_rows_name_idx", "name"))
		require.NoError(t, err)

		// Store every hostile string, plus a few plain names for the LIKE
		// patterns to match, through Create, BulkCreate and Upsert.
		names := append(append([]string(nil), hostileStrings...), "abc", "ABC", "a_c", "a%c", "ab")
		rows := make([]hostileRow, len(names))
		for i, s := range names {
			note := s
			rows[i] = hostileRow{Name: s, Note: &note, N: int64(i), Meta: map[string]any{s: s, "list": []any{s}}}
		}
		third := len(rows) / 3
		for i := range rows[:third] {
			require.NoError(t, tbl.Create(ctx, &rows[i]))
		}
		require.NoError(t, tbl.BulkCreate(ctx, rows[third:2*third]))
		for i := 2 * third; i < len(rows); i++ {
			require.NoError(t, tbl.Upsert(ctx, &rows[i]))
		}
		total := len(rows)
		require.Equal(t, total, hostileCount(ctx, t, db, "hostile_rows"))

		byName := map[string]hostileRow{}
		for _, r := range rows {
			require.NotZero(t, r.ID)
			byName[r.Name] = r
		}
		require.Len(t, byName, total, "names must be distinct")

		t.Run("read-back", func(t *testing.T) {
			for _, want := range rows {
				got, err := tbl.Read(ctx, want.ID)
				require.NoError(t, err)
				require.Equal(t, []byte(want.Name), []byte(got.Name))
				require.NotNil(t, got.Note)
				require.Equal(t, []byte(*want.Note), []byte(*got.Note))
				require.Equal(t, want.N, got.N)
				require.Equal(t, want.Meta, got.Meta)
			}
		})

		t.Run("filter-values", func(t *testing.T) {
			for i, s := range names {
				want := []int64{byName[s].ID}
				for _, f := range []dataflow.Filter{
					{"name": s},
					{"name": &s},
					{"note": s, "n": int64(i)},
					{"name": dataflow.In(s, "never stored")},
				} {
					got, err := tbl.List(ctx, dataflow.Query{Filter: f})
					hostileNoDBError(t, err)
					require.NoError(t, err, "%q", s)
					require.Equal(t, want, hostileIDs(got), "%q", s)
					n, err := tbl.Count(ctx, f)
					require.NoError(t, err)
					require.Equal(t, 1, n, "%q", s)
				}
				n, err := tbl.Count(ctx, dataflow.Filter{"name": dataflow.Ne(s)})
				require.NoError(t, err)
				require.Equal(t, total-1, n, "%q", s)
				_, err = tbl.Count(ctx, dataflow.Filter{"name": dataflow.Gt(s), "note": dataflow.Lte(s)})
				hostileNoDBError(t, err)
				require.NoError(t, err, "%q", s)
			}
		})

		t.Run("like-patterns", func(t *testing.T) {
			patterns := append(append([]string(nil), hostileStrings...), "%", "_", "%_%", "a_c", "a%c", "A%", "%c", "___")
			for i, p := range patterns {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					if n := len(p) - len(strings.TrimRight(p, `\`)); n%2 == 1 {
						// A lone trailing backslash escapes nothing: refused.
						_, err := tbl.List(ctx, dataflow.Query{Filter: dataflow.Filter{"name": dataflow.Like(p)}})
						require.ErrorIs(t, err, dataflow.ErrInvalidArgument, "Like(%q)", p)
						return
					}
					want := []int64{}
					for _, r := range rows {
						if hostileLike(p, r.Name, caseSensitive) {
							want = append(want, r.ID)
						}
					}
					got, err := tbl.List(ctx, dataflow.Query{Filter: dataflow.Filter{"name": dataflow.Like(p)}})
					hostileNoDBError(t, err)
					require.NoError(t, err, "%q", p)
					require.Equal(t, want, hostileIDs(got), "Like(%q)", p)
				})
			}
		})

		t.Run("unknown-columns", func(t *testing.T) {
			for _, col := range hostileUnknownColumns {
				calls := map[string]func() error{
					"List filter":     func() error { _, err := tbl.List(ctx, dataflow.Query{Filter: dataflow.Filter{col: 1}}); return err },
					"List order":      func() error { _, err := tbl.List(ctx, dataflow.Query{OrderBy: []string{col}}); return err },
					"List order desc": func() error { _, err := tbl.List(ctx, dataflow.Query{OrderBy: []string{"-" + col}}); return err },
					"Count":           func() error { _, err := tbl.Count(ctx, dataflow.Filter{"name": "abc", col: "x"}); return err },
					"BulkUpdate where": func() error {
						_, err := tbl.BulkUpdate(ctx, dataflow.Filter{col: 1}, map[string]any{"n": 0})
						return err
					},
					"BulkUpdate set": func() error {
						_, err := tbl.BulkUpdate(ctx, dataflow.Filter{"n": 1}, map[string]any{col: 0})
						return err
					},
					"BulkDelete": func() error { _, err := tbl.BulkDelete(ctx, dataflow.Filter{col: dataflow.IsNull(false)}); return err },
				}
				for name, call := range calls {
					before := stmts.n.Load()
					err := call()
					require.ErrorIsf(t, err, dataflow.ErrUnknownColumn, "%s with column %q", name, col)
					require.Equalf(t, before, stmts.n.Load(), "%s with column %q ran SQL", name, col)
				}
			}
			canary(t)
		})

		t.Run("writes", func(t *testing.T) {
			for _, s := range names {
				r := byName[s]
				upd := s + "!'--"
				n, err := tbl.BulkUpdate(ctx, dataflow.Filter{"name": s}, map[string]any{"note": upd})
				hostileNoDBError(t, err)
				require.NoError(t, err, "%q", s)
				require.EqualValues(t, 1, n, "%q", s)
				got, err := tbl.Read(ctx, r.ID)
				require.NoError(t, err)
				require.Equal(t, upd, *got.Note)

				got.Meta = map[string]any{upd: upd}
				require.NoError(t, tbl.Update(ctx, got))
				again, err := tbl.Read(ctx, r.ID)
				require.NoError(t, err)
				require.Equal(t, got.Meta, again.Meta)
			}
			require.Equal(t, total, hostileCount(ctx, t, db, "hostile_rows"))

			victim := hostileStrings[0] // `'; DROP TABLE turnkeep_messages; --`
			n, err := tbl.BulkDelete(ctx, dataflow.Filter{"name": victim + " never stored"})
			require.NoError(t, err)
			require.Zero(t, n)
			n, err = tbl.BulkDelete(ctx, dataflow.Filter{"name": victim})
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
			require.ErrorIs(t, tbl.Delete(ctx, &hostileRow{ID: byName[victim].ID}), dataflow.ErrNotFound)
			require.Equal(t, total-1, hostileCount(ctx, t, db, "hostile_rows"))
			canary(t)
		})

		// Values the engine hands to the database unchecked. Each must be
		// refused with ErrInvalidArgument, or select what it says.
		t.Run("unchecked-values", func(t *testing.T) {
			many := make([]int64, 70000)
			for i := range many {
				many[i] = int64(i)
			}
			cases := []struct {
				name   string
				filter dataflow.Filter
				want   int // rows, if the engine accepts the filter
			}{
				{"text-nul", dataflow.Filter{"name": "abc\x00zzz"}, -1},
				{"text-invalid-utf8", dataflow.Filter{"name": "ab\xff"}, -1},
				{"like-nul", dataflow.Filter{"name": dataflow.Like("ab\x00zz")}, -1},
				{"injection-on-integer-column", dataflow.Filter{"n": hostileStrings[0]}, -1},
				{"nan-on-integer-column", dataflow.Filter{"n": dataflow.Gt(math.NaN())}, -1},
				{"uint64-high-bit", dataflow.Filter{"n": uint64(1 << 63)}, -1},
				{"in-70000-values", dataflow.Filter{"n": dataflow.In(many...)}, -1},
				{"like-pattern-50001-bytes", dataflow.Filter{"name": dataflow.Like(strings.Repeat("%", 50001))}, -1},
				{"like-trailing-backslash", dataflow.Filter{"name": dataflow.Like(`ab\`)}, -1},
				{"nil-in-in", dataflow.Filter{"name": dataflow.In[any]("abc", nil)}, -1},
				{"slice-value", dataflow.Filter{"name": []string{"abc"}}, -1},
				{"map-value", dataflow.Filter{"name": map[string]any{"a": 1}}, -1},
				{"chan-value", dataflow.Filter{"name": make(chan int)}, -1},
				{"func-value", dataflow.Filter{"name": dataflow.Gt(func() {})}, -1},
				{"complex-value", dataflow.Filter{"n": dataflow.Lt(complex(1, 1))}, -1},
				{"zero-op", dataflow.Filter{"name": dataflow.Op{}}, -1},
				{"nil-gt", dataflow.Filter{"name": dataflow.Gt(nil)}, -1},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					n, err := tbl.Count(ctx, c.filter)
					hostileNoDBError(t, err)
					if c.want < 0 {
						require.ErrorIs(t, err, dataflow.ErrInvalidArgument)
						return
					}
					if err != nil {
						require.ErrorIs(t, err, dataflow.ErrInvalidArgument)
						return
					}
					require.Equal(t, c.want, n)
				})
			}
			require.Equal(t, total-1, hostileCount(ctx, t, db, "hostile_rows"))
			canary(t)
		})

		// The backend's own tables answer hostile keys with ErrNotFound.
		t.Run("backend-tables", func(t *testing.T) {
			sessions, err := dataflow.Register[backend.SessionRow](db)
			require.NoError(t, err)
			for _, s := range hostileStrings {
				_, err := sessions.Read(ctx, s)
				hostileNoDBError(t, err)
				require.ErrorIs(t, err, dataflow.ErrNotFound, "%q", s)
			}
			n, err := sessions.Count(ctx, dataflow.Filter{"id": dataflow.Like("%")})
			require.NoError(t, err)
			require.Zero(t, n)
			canary(t)
		})
	})
}

// hostileURLs are malformed URLs for dataflow.Open; each is ErrInvalidURL.
func hostileURLs() []string {
	long := strings.Repeat("x", 1<<20)
	return []string{
		"", " ", "\x00", "\xff\xfe", ":", "://", "memory", ":memory", ":memory:x", "sqlite:",
		"sqlite:/", "sqlite://", "sqlite:///", "sqlite:/a.db", "sqlite://a.db", "sqlite:///a?b",
		"sqlite:///a.db?_pragma=journal_mode(DELETE)", "sqlite:///a.db#frag", "sqlite:///?", "sqlite:///%zz",
		"sqlite:///a%00b.db", "sqlite:///a\x00b.db", "sqlite:///%", "sqlite:///:memory:?cache=private",
		"SQLITE:///a.db", " sqlite:///a.db", "file:a.db", "file::memory:", "mysql://x", "mysql://u:sekrit@h:port/db",
		"postgres://", "postgres:///db", "postgres://u:sekrit@/db", "postgresql://", "postgres:", "postgres:/h/db",
		"postgres://u:p%zz@h/db", "postgres://u:sekrit@h:port/db", "postgres://u:sekrit@[::1/db",
		"postgres://u:sekrit@h\x7f/db", "postgres://u:sekrit@%zz/db", "POSTGRES://u:sekrit@h/db",
		"'; DROP TABLE turnkeep_messages; --", "sqlite:///'; DROP TABLE x; --?",
		long, "sqlite:///" + long + "?x", "mysql://" + long, "postgres://" + strings.Repeat("%", 1<<16),
		"postgres://u:" + long + "@h:x/db",
	}
}

// TestHostileInputOpenURLs opens malformed URLs: each is ErrInvalidURL,
// never a panic, never an echoed password, and nothing is created.
func TestHostileInputOpenURLs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // a relative sqlite path would land here
	ctx, cancel := context.WithTimeout(t.Context(), hostileTimeout)
	defer cancel()
	for i, raw := range hostileURLs() {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("Open(%.80q) panicked: %v", raw, r)
				}
			}()
			db, err := dataflow.Open(ctx, raw)
			if db != nil {
				db.Close()
			}
			require.ErrorIsf(t, err, dataflow.ErrInvalidURL, "Open(%.80q)", raw)
			msg := err.Error()
			require.NotContains(t, msg, "sekrit", "the error echoes the password")
			require.NotContains(t, msg, "p%zz", "the error echoes the password")
			if len(raw) > 1<<16 && !strings.HasPrefix(raw, "sqlite://") {
				require.Less(t, len(msg), 1024, "the error echoes a huge URL")
			}
			require.True(t, utf8.ValidString(msg) || !utf8.ValidString(raw), "the error is not valid UTF-8")
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "Open of a malformed URL created files")
}
