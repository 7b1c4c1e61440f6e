package dataflow

import (
	"cmp"
	"context"
	"errors"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	_ "modernc.org/sqlite" // registers "sqlite"
)

// Fuzz targets of the engine (issue 4, item 7). They are internal tests so
// that FuzzParseURL reaches parseURL directly. Seeds are the f.Add calls
// below and the files under testdata/fuzz/<FuzzName>/; `go test` runs each
// target over its seeds, `go test -run '^$' -fuzz '^FuzzX$' ./dataflow/`
// explores further (see .ci/fuzz).

// fuzzURLSeeds are the URL forms Open documents, and malformed ones.
var fuzzURLSeeds = []string{
	"", ":memory:", "sqlite:///:memory:", "sqlite://:memory:", "sqlite:///app.db",
	"sqlite:////tmp/app.db", "sqlite:///a%3fb%23c%25d.db", "sqlite:///a%20b.db", "sqlite:///dir/ümlaut.db",
	"sqlite:///a&_pragma=journal_mode(DELETE)", "sqlite:///%3Fvfs=memdb", "sqlite:///a%3F_pragma=x",
	"sqlite://", "sqlite:///", "sqlite:///a?b", "sqlite:///a#b", "sqlite:///%zz", "sqlite:///a%00b",
	"sqlite://a.db", "mysql://x", "postgres://", "postgres:///db", "postgres://u:p%zz@h/db",
	"postgres://user:secretpw@db.example.com:5432/app?sslmode=disable",
	"postgresql://user:secretpw@h/db", "postgres://user:secretpw@/db", "postgres://user:secretpw@h:port/db",
	"postgres://user:xxxxx@h/db", "postgres://h/db?password=secretpw",
}

// FuzzParseURL checks parseURL on arbitrary strings: it never panics; an
// error is ErrInvalidURL and never shows the password of a postgres URL; a
// SQLite target's DSN is a file: URI whose path is the URL's path, escaped
// so that nothing in it can become a URI parameter; a PostgreSQL target
// keeps the URL and redacts the password for errors and logs.
func FuzzParseURL(f *testing.F) {
	for _, s := range fuzzURLSeeds {
		f.Add(s)
	}
	cfg, err := newConfig(nil)
	if err != nil {
		f.Fatal(err)
	}
	wantPragmas, err := url.ParseQuery(strings.TrimPrefix(sqlitePragmas(cfg, false), "&"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tg, err := parseURL(raw, cfg)
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("parseURL(%q): %v; want ErrInvalidURL", raw, err)
			}
			if tg != (target{}) {
				t.Fatalf("parseURL(%q) returned an error and a target %+v", raw, tg)
			}
			fuzzNoPassword(t, raw, err.Error())
			return
		}
		switch {
		case tg.memory:
			rest, isFile := strings.CutPrefix(raw, "sqlite:///")
			if p, err := url.PathUnescape(rest); raw != ":memory:" && raw != "sqlite://:memory:" && (!isFile || err != nil || p != ":memory:") {
				t.Fatalf("parseURL(%q) is in-memory", raw)
			}
			q := fuzzDSNQuery(t, tg.dsn, "file:turnkeep-mem-")
			if tg.driver != SQLiteDriver || tg.pg || tg.path != "" || q.Get("mode") != "memory" || q.Get("cache") != "shared" {
				t.Fatalf("parseURL(%q) = %+v", raw, tg)
			}

		case tg.mysql:
			u, err := url.Parse(raw)
			if !strings.HasPrefix(raw, "mysql://") || err != nil || u.Host == "" {
				t.Fatalf("parseURL(%q) is MySQL (%v)", raw, err)
			}
			if tg.driver != MySQLDriver || tg.path != "" || !strings.Contains(tg.dsn, "@tcp("+u.Host+")/") && !strings.HasPrefix(tg.dsn, "tcp(") {
				t.Fatalf("parseURL(%q) = %+v", raw, tg)
			}
			fuzzNoPassword(t, raw, tg.redacted)

		case tg.pg:
			if !strings.HasPrefix(raw, "postgres://") && !strings.HasPrefix(raw, "postgresql://") {
				t.Fatalf("parseURL(%q) is PostgreSQL", raw)
			}
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" {
				t.Fatalf("parseURL(%q) accepted a URL without a host or that url.Parse refuses (%v)", raw, err)
			}
			if tg.driver != PostgresDriver || tg.dsn != raw || tg.path != "" {
				t.Fatalf("parseURL(%q) = %+v", raw, tg)
			}
			r, err := url.Parse(tg.redacted)
			if err != nil || r.Host != u.Host {
				t.Fatalf("parseURL(%q): redacted %q is not the URL (%v)", raw, tg.redacted, err)
			}
			if _, ok := u.User.Password(); ok {
				if pw, _ := r.User.Password(); pw != "xxxxx" {
					t.Fatalf("parseURL(%q): redacted %q does not mask the password", raw, tg.redacted)
				}
			}
			if u.Query().Has("password") && r.Query().Get("password") != "xxxxx" {
				t.Fatalf("parseURL(%q): redacted %q does not mask the password parameter", raw, tg.redacted)
			}
			fuzzNoPassword(t, raw, tg.redacted)

		default:
			rest, ok := strings.CutPrefix(raw, "sqlite:///")
			if !ok || strings.ContainsAny(raw, "?#") {
				t.Fatalf("parseURL(%q) is a SQLite file", raw)
			}
			path, err := url.PathUnescape(rest)
			if err != nil || path != tg.path || path == "" || strings.ContainsRune(path, 0) {
				t.Fatalf("parseURL(%q): path %q; want the unescaped %q (%v)", raw, tg.path, rest, err)
			}
			if tg.driver != SQLiteDriver || tg.redacted != raw {
				t.Fatalf("parseURL(%q) = %+v", raw, tg)
			}
			// The file: URI: its path decodes (as SQLite decodes it) to the
			// file path, holds no '?' or '#', and the parameters are exactly
			// the engine's, whatever the path held.
			// An absolute path gets an empty URI authority ("file://").
			dsnPath, _, _ := strings.Cut(strings.TrimPrefix(tg.dsn, "file:"), "?")
			if strings.HasPrefix(path, "/") {
				if !strings.HasPrefix(dsnPath, "//") {
					t.Fatalf("parseURL(%q): DSN %q: an absolute path without an empty authority", raw, tg.dsn)
				}
				dsnPath = dsnPath[2:]
			}
			if strings.ContainsAny(dsnPath, "?#") {
				t.Fatalf("parseURL(%q): DSN %q: the path leaks into the URI parameters", raw, tg.dsn)
			}
			if got, err := url.PathUnescape(dsnPath); err != nil || got != path {
				t.Fatalf("parseURL(%q): DSN %q names file %q; want %q (%v)", raw, tg.dsn, got, path, err)
			}
			q := fuzzDSNQuery(t, tg.dsn, "file:")
			if !fuzzSameQuery(q, wantPragmas) {
				t.Fatalf("parseURL(%q): DSN %q has parameters %v; want %v", raw, tg.dsn, q, wantPragmas)
			}
		}
	})
}

// fuzzDSNQuery requires dsn to start with prefix and returns its URI
// parameters.
func fuzzDSNQuery(t *testing.T, dsn, prefix string) url.Values {
	t.Helper()
	if !strings.HasPrefix(dsn, prefix) {
		t.Fatalf("DSN %q does not start with %q", dsn, prefix)
	}
	_, query, ok := strings.Cut(dsn, "?")
	if !ok {
		t.Fatalf("DSN %q has no parameters", dsn)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("DSN %q: parameters: %v", dsn, err)
	}
	return q
}

func fuzzSameQuery(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// fuzzNoPassword fails if text, an error or the redacted form of raw,
// shows a password of a postgres:// URL: the userinfo password (up to the
// last '@' of the authority, after the first ':', as url.Parse takes it) or
// the value of a well-formed password query parameter, each in its raw and
// its decoded form. A form is judged only when it is at least 6 bytes long
// and occurs nowhere else in raw nor in the fixed text of the errors.
func fuzzNoPassword(t *testing.T, raw, text string) {
	t.Helper()
	rest, ok := strings.CutPrefix(raw, "postgres://")
	if !ok {
		if rest, ok = strings.CutPrefix(raw, "postgresql://"); !ok {
			return
		}
	}
	off := len(raw) - len(rest)
	beforeFragment, _, _ := strings.Cut(rest, "#")
	type span struct{ start, end int } // a secret in raw
	var secrets []span

	authority := rest
	if i := strings.IndexAny(authority, "/?#"); i >= 0 {
		authority = authority[:i]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		if colon := strings.IndexByte(authority[:at], ':'); colon >= 0 {
			secrets = append(secrets, span{off + colon + 1, off + at})
		}
	}
	if q := strings.IndexByte(beforeFragment, '?'); q >= 0 {
		pos := off + q + 1
		for _, pair := range strings.Split(beforeFragment[q+1:], "&") {
			k, v, _ := strings.Cut(pair, "=")
			key, kerr := url.QueryUnescape(k)
			_, verr := url.QueryUnescape(v)
			if key == "password" && kerr == nil && verr == nil && !strings.Contains(pair, ";") {
				secrets = append(secrets, span{pos + len(k) + 1, pos + len(pair)})
			}
			pos += len(pair) + 1
		}
	}

	const fixed = "dataflow: invalid database url: cannot parse postgres url: no host xxxxx password"
	for _, sp := range secrets {
		if sp.start > sp.end {
			continue // "password" without '='
		}
		secret := raw[sp.start:sp.end]
		elsewhere := raw[:sp.start] + "\x00" + raw[sp.end:]
		forms := []string{secret}
		if dec, err := url.PathUnescape(secret); err == nil {
			forms = append(forms, dec)
		}
		if dec, err := url.QueryUnescape(secret); err == nil {
			forms = append(forms, dec)
		}
		for _, p := range forms {
			if len(p) < 6 || strings.Contains(elsewhere, p) || strings.Contains(fixed, p) {
				continue
			}
			if dec, err := url.PathUnescape(elsewhere); err == nil && strings.Contains(dec, p) {
				continue
			}
			if dec, err := url.QueryUnescape(elsewhere); err == nil && strings.Contains(dec, p) {
				continue
			}
			if strings.Contains(text, p) {
				t.Fatalf("parseURL(%q): %q shows the password %q", raw, text, p)
			}
		}
	}
}

// fuzzRow is the model FuzzFilter queries.
type fuzzRow struct {
	bun.BaseModel `bun:"table:fuzz_rows"`

	ID   int64          `bun:"id,pk,autoincrement"`
	Name string         `bun:"name,notnull"`
	N    int64          `bun:"n,notnull"`
	Note *string        `bun:"note"`
	At   time.Time      `bun:"at,notnull"`
	Meta map[string]any `bun:"meta"`
}

// fuzzNames are the names of the rows: distinct, valid UTF-8, no NUL.
var fuzzNames = []string{
	"", "a", "ab", "abc", "ABC", "Abc", "a_c", "a%c", "a\\c", "%", "_", "\\", "'", "''", `"`,
	"'; DROP TABLE fuzz_rows; --", `" OR 1=1 --`, "$1", "?", "日本語", "ǅ", "ß", "😀", "ab\ncd", "z",
}

// fuzzStmts counts the statements the engine runs.
type fuzzStmts struct{ n atomic.Int64 }

func (h *fuzzStmts) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }
func (h *fuzzStmts) AfterQuery(context.Context, *bun.QueryEvent)                        { h.n.Add(1) }

// FuzzFilter builds a filter from a fuzzed column name, value kind and
// operator, and runs List and Count (and List ordered by the column) on a
// small SQLite table, one database per fuzzing process. A column the model
// lacks is ErrUnknownColumn before any SQL runs. Otherwise the operations
// never panic and never fail in the database: the error is nil, or
// ErrInvalidArgument exactly for the inputs the Filter documentation makes
// invalid. Where the rows to expect can be computed in Go (integer
// comparisons, text equality and order, LIKE, IS NULL), List returns
// exactly them and Count agrees.
func FuzzFilter(f *testing.F) {
	f.Add("name", byte(0), byte(0), "abc", int64(0), 0.0)
	f.Add("name", byte(0), byte(7), "a%", int64(0), 0.0)
	f.Add("name", byte(0), byte(7), "_b_", int64(0), 0.0)
	f.Add("name", byte(0), byte(1), "ab", int64(0), 0.0)
	f.Add("name", byte(0), byte(0), "'; DROP TABLE fuzz_rows; --", int64(0), 0.0)
	f.Add("n", byte(1), byte(2), "", int64(3), 0.0)
	f.Add("n", byte(1), byte(6), "", int64(5), 0.0)
	f.Add("n", byte(14), byte(5), "", int64(-2), 0.0)
	f.Add("note", byte(4), byte(0), "", int64(0), 0.0)
	f.Add("note", byte(0), byte(8), "", int64(1), 0.0)
	f.Add("meta", byte(8), byte(1), "k", int64(1), 0.0)
	f.Add("at", byte(6), byte(3), "", int64(1_700_000_000), 0.0)
	f.Add("id", byte(2), byte(4), "", int64(0), math.Inf(1))
	f.Add("name", byte(7), byte(0), "abc", int64(0), 0.0)
	f.Add("name", byte(9), byte(1), "", int64(0), 0.0)
	f.Add("n", byte(10), byte(6), "", int64(0), 1.5)
	f.Add("name", byte(0), byte(9), "", int64(0), 0.0)
	f.Add("-name", byte(0), byte(0), "", int64(0), 0.0)
	f.Add("id; DROP TABLE fuzz_rows", byte(0), byte(0), "", int64(0), 0.0)

	ctx := context.Background()
	stmts := &fuzzStmts{}
	db, err := Open(ctx, "sqlite:///"+filepath.Join(f.TempDir(), "fuzz.db"), WithQueryHook(stmts))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	tbl, err := Register[fuzzRow](db)
	if err != nil {
		f.Fatal(err)
	}
	rows := make([]fuzzRow, len(fuzzNames))
	for i, name := range fuzzNames {
		rows[i] = fuzzRow{Name: name, N: int64(i*7 - 40), At: time.Unix(int64(i)*86400, 0).UTC(),
			Meta: map[string]any{"i": i}}
		if i%3 != 0 {
			note := name
			rows[i].Note = &note
		}
	}
	rows[len(rows)-1].N = math.MaxInt64
	rows[0].N = math.MinInt64
	if err := tbl.BulkCreate(ctx, rows); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, col string, kind, op byte, s string, n int64, x float64) {
		in := fuzzInput{kind: kind % fuzzKinds, op: op % fuzzOps, s: s, n: n, x: x}
		filter := Filter{col: in.filterValue()}

		_, known := tbl.st.cols[col]
		before := stmts.n.Load()
		list, lerr := tbl.List(ctx, Query{Filter: filter})
		count, cerr := tbl.Count(ctx, filter)
		if !known {
			if !errors.Is(lerr, ErrUnknownColumn) || !errors.Is(cerr, ErrUnknownColumn) {
				t.Fatalf("filter on unknown column %q: List: %v, Count: %v; want ErrUnknownColumn", col, lerr, cerr)
			}
			if got := stmts.n.Load(); got != before {
				t.Fatalf("filter on unknown column %q ran %d statements", col, got-before)
			}
		} else {
			for _, err := range []error{lerr, cerr} {
				if in.invalid(col) != errors.Is(err, ErrInvalidArgument) || (err != nil && !errors.Is(err, ErrInvalidArgument)) {
					t.Fatalf("filter %s = %#v: %v; want invalid argument: %v", col, filter[col], err, in.invalid(col))
				}
			}
			if lerr == nil {
				fuzzCheckRows(t, rows, col, in, list, count)
			}
		}

		// The column as an order: "-col" descending.
		ocol := strings.TrimPrefix(col, "-")
		before = stmts.n.Load()
		list, err := tbl.List(ctx, Query{OrderBy: []string{col}})
		if _, ok := tbl.st.cols[ocol]; !ok {
			if !errors.Is(err, ErrUnknownColumn) || stmts.n.Load() != before {
				t.Fatalf("order by unknown column %q: %v; want ErrUnknownColumn before any SQL", col, err)
			}
			return
		}
		if err != nil || len(list) != len(rows) {
			t.Fatalf("order by %q: %d rows, %v; want %d rows", col, len(list), err, len(rows))
		}
		fuzzCheckOrder(t, col, list)
	})
}

// Value kinds and operators of FuzzFilter.
const (
	fuzzString = iota
	fuzzInt64
	fuzzFloat64
	fuzzBool
	fuzzNil
	fuzzBytes
	fuzzTime
	fuzzStrings // a []string: not a plain value
	fuzzMap     // a map: not a plain value
	fuzzChan    // cannot be bound
	fuzzComplex // cannot be bound
	fuzzStringPtr
	fuzzNilPtr
	fuzzUint64
	fuzzInt32
	fuzzStruct
	fuzzKinds
)

const (
	fuzzPlain = iota
	fuzzGt
	fuzzGte
	fuzzLt
	fuzzLte
	fuzzNe
	fuzzIn
	fuzzLike
	fuzzIsNull
	fuzzZeroOp
	fuzzOpPtr // &Gt(v)
	fuzzNilOp // (*Op)(nil), which is a nil value
	fuzzOps
)

type fuzzInput struct {
	kind, op byte
	s        string
	n        int64
	x        float64
}

func (in fuzzInput) value() any {
	switch in.kind {
	case fuzzString:
		return in.s
	case fuzzInt64:
		return in.n
	case fuzzFloat64:
		return in.x
	case fuzzBool:
		return in.n&1 == 1
	case fuzzNil:
		return nil
	case fuzzBytes:
		return []byte(in.s)
	case fuzzTime:
		return time.Unix(in.n%(1<<40), in.n%1e9).UTC()
	case fuzzStrings:
		return []string{in.s}
	case fuzzMap:
		return map[string]any{in.s: in.n}
	case fuzzChan:
		return make(chan int)
	case fuzzComplex:
		return complex(in.x, 1)
	case fuzzStringPtr:
		return &in.s
	case fuzzNilPtr:
		return (*string)(nil)
	case fuzzUint64:
		return uint64(in.n)
	case fuzzInt32:
		return int32(in.n)
	default: // fuzzStruct
		return struct{ S string }{in.s}
	}
}

// inList is the list of the In operator: the value, then up to two more,
// one of them nil when the top bit of n is set.
func (in fuzzInput) inList() []any {
	list := []any{in.value(), in.n, in.s}[:in.n&3%3]
	if in.n < 0 && len(list) > 0 {
		list = append(list, nil)
	}
	return list
}

func (in fuzzInput) filterValue() any {
	v := in.value()
	switch in.op {
	case fuzzGt:
		return Gt(v)
	case fuzzGte:
		return Gte(v)
	case fuzzLt:
		return Lt(v)
	case fuzzLte:
		return Lte(v)
	case fuzzNe:
		return Ne(v)
	case fuzzIn:
		return In(in.inList()...)
	case fuzzLike:
		return Like(in.s)
	case fuzzIsNull:
		return IsNull(in.n&1 == 0)
	case fuzzZeroOp:
		return Op{}
	case fuzzOpPtr:
		op := Gt(v)
		return &op
	case fuzzNilOp:
		return (*Op)(nil)
	}
	return v
}

// invalid reports whether the Filter documentation makes the input an
// invalid argument.
func (in fuzzInput) invalid(col string) bool {
	isNilValue := in.kind == fuzzNil || in.kind == fuzzNilPtr
	switch in.op {
	case fuzzPlain:
		return !isNilValue && (in.kind == fuzzStrings || in.kind == fuzzMap || fuzzBadValue(col, in.value()))
	case fuzzGt, fuzzGte, fuzzLt, fuzzLte, fuzzOpPtr:
		return isNilValue || fuzzBadValue(col, in.value())
	case fuzzNe:
		return !isNilValue && fuzzBadValue(col, in.value())
	case fuzzIn:
		for _, v := range in.inList() {
			if v == nil || fuzzBadValue(col, v) {
				return true
			}
		}
		return false
	case fuzzLike:
		return fuzzBadLike(in.s)
	case fuzzZeroOp:
		return true
	}
	return false
}

// fuzzColumnKinds are the kinds of fuzzRow's columns that checkType knows.
var fuzzColumnKinds = map[string]string{"id": "int", "n": "int", "name": "string", "note": "string", "at": "time"}

// fuzzBadValue reports whether a non-nil value is refused: of another
// kind than its column, not bindable, or bad text, an out-of-range
// integer or time.
func fuzzBadValue(col string, v any) bool {
	if p, ok := v.(*string); ok {
		if p == nil {
			return true
		}
		v = *p
	}
	var kind string
	switch x := v.(type) {
	case string:
		if strings.IndexByte(x, 0) >= 0 || !utf8.ValidString(x) {
			return true
		}
		kind = "string"
	case int64, int32:
		kind = "int"
	case uint64:
		if x > math.MaxInt64 {
			return true
		}
		kind = "int"
	case float64:
		kind = "float"
	case bool:
		kind = "bool"
	case time.Time:
		if y := x.UTC().Year(); y < 1 || y > 9999 {
			return true
		}
		kind = "time"
	case chan int, complex128:
		return true
	}
	ck := fuzzColumnKinds[col]
	return ck != "" && kind != "" && ck != kind
}

// fuzzBadLike reports whether Like refuses the pattern.
func fuzzBadLike(p string) bool {
	if len(p) > MaxLikePatternBytes || strings.IndexByte(p, 0) >= 0 || !utf8.ValidString(p) {
		return true
	}
	escaped := false
	for i := 0; i < len(p); i++ {
		escaped = !escaped && p[i] == '\\'
	}
	return escaped
}

// fuzzCheckRows checks what List and Count returned: the same number of
// distinct stored rows, and exactly the expected rows where Go can tell.
func fuzzCheckRows(t *testing.T, rows []fuzzRow, col string, in fuzzInput, list []fuzzRow, count int) {
	t.Helper()
	if len(list) != count {
		t.Fatalf("List returned %d rows, Count %d", len(list), count)
	}
	ids := map[int64]bool{}
	for _, r := range list {
		if ids[r.ID] || r.ID < 1 || r.ID > int64(len(rows)) {
			t.Fatalf("List returned row id %d twice or out of range", r.ID)
		}
		ids[r.ID] = true
	}
	match := fuzzPredicate(col, in)
	if match == nil {
		return
	}
	var want []int64
	for _, r := range rows {
		if match(r) {
			want = append(want, r.ID)
		}
	}
	got := make([]int64, len(list))
	for i, r := range list {
		got[i] = r.ID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("filter %s = %#v: rows %v; want %v", col, in.filterValue(), got, want)
	}
}

// fuzzPredicate is the filter as a Go predicate, or nil where SQLite's
// answer is not simple to compute (mixed types, floats, JSON, times).
func fuzzPredicate(col string, in fuzzInput) func(fuzzRow) bool {
	var ints []int64
	switch in.kind {
	case fuzzInt64:
		ints = []int64{in.n}
	case fuzzInt32:
		ints = []int64{int64(int32(in.n))}
	}
	text := in.kind == fuzzString || in.kind == fuzzStringPtr
	cmpOp := func(c int) bool {
		switch in.op {
		case fuzzPlain:
			return c == 0
		case fuzzGt, fuzzOpPtr:
			return c > 0
		case fuzzGte:
			return c >= 0
		case fuzzLt:
			return c < 0
		case fuzzLte:
			return c <= 0
		case fuzzNe:
			return c != 0
		}
		panic("not a comparison")
	}
	switch {
	// Only note is ever NULL.
	case in.op == fuzzIsNull:
		null := in.n&1 == 0
		return func(r fuzzRow) bool { return (col == "note" && r.Note == nil) == null }
	case in.op == fuzzNilOp || (in.op == fuzzPlain && (in.kind == fuzzNil || in.kind == fuzzNilPtr)):
		return func(r fuzzRow) bool { return col == "note" && r.Note == nil }
	case in.op == fuzzLike && col == "name" && !fuzzBadLike(in.s):
		return func(r fuzzRow) bool { return fuzzLikeMatch(in.s, r.Name) }
	case in.op == fuzzIn || in.op == fuzzLike || in.op == fuzzIsNull || in.op == fuzzZeroOp || in.op == fuzzNilOp:
		return nil
	case col == "n" && ints != nil:
		return func(r fuzzRow) bool { return cmpOp(cmp.Compare(r.N, ints[0])) }
	case col == "name" && text:
		return func(r fuzzRow) bool { return cmpOp(strings.Compare(r.Name, in.s)) }
	}
	return nil
}

// fuzzLikeMatch is SQLite's default LIKE: % any run of characters, _ one
// character, ASCII letters case-insensitive, and a backslash escaping the
// next character (the engine's ESCAPE '\\').
func fuzzLikeMatch(pattern, s string) bool {
	r := []rune(s)
	fold := func(c rune) rune {
		if 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	m := make([]bool, len(r)+1) // m[j]: the pattern so far matches r[:j]
	m[0] = true
	escaped := false
	for _, c := range pattern { // valid UTF-8: one rune at a time
		if !escaped && c == '\\' {
			escaped = true
			continue
		}
		literal := escaped
		escaped = false
		next := make([]bool, len(r)+1)
		for j := 0; j <= len(r); j++ {
			switch {
			case c == '%' && !literal:
				next[j] = m[j] || (j > 0 && next[j-1])
			case j == 0:
			case c == '_' && !literal:
				next[j] = m[j-1]
			default:
				next[j] = m[j-1] && fold(c) == fold(r[j-1])
			}
		}
		m = next
	}
	return m[len(r)]
}

// fuzzCheckOrder checks the order of List ordered by col, where Go can
// tell it.
func fuzzCheckOrder(t *testing.T, col string, list []fuzzRow) {
	t.Helper()
	desc := strings.HasPrefix(col, "-")
	var c func(a, b fuzzRow) int
	switch strings.TrimPrefix(col, "-") {
	case "id":
		c = func(a, b fuzzRow) int { return cmp.Compare(a.ID, b.ID) }
	case "n":
		c = func(a, b fuzzRow) int { return cmp.Compare(a.N, b.N) }
	case "name":
		c = func(a, b fuzzRow) int { return strings.Compare(a.Name, b.Name) }
	default:
		return
	}
	for i := 1; i < len(list); i++ {
		d := c(list[i-1], list[i])
		if desc {
			d = -d
		}
		if d > 0 {
			t.Fatalf("order by %q: row %d (%+v) before row %d (%+v)", col, i-1, list[i-1], i, list[i])
		}
	}
}
