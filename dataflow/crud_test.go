package dataflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// ready opens a fresh database with a recorder and an ensured users table.
func ready(t *testing.T, d dbtest.Dialect) (context.Context, *dataflow.Table[user], *recorder) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	db, rec := openRec(t, d.URL(t))
	users := register[user](t, db)
	require.NoError(t, users.EnsureTable(ctx))
	rec.reset()
	return ctx, users, rec
}

func TestCreateReadsBackGeneratedKey(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, _ := ready(t, d)
		var prev int64
		for _, name := range []string{"ann", "bob", "cy"} {
			u := user{Name: name, Created: time.Now()}
			require.NoError(t, users.Create(ctx, &u))
			assert.Greater(t, u.ID, prev, "id of %s", name)
			prev = u.ID
			got, err := users.Read(ctx, u.ID)
			require.NoError(t, err)
			assert.Equal(t, name, got.Name)
		}
		explicit := user{ID: 100, Name: "explicit", Created: time.Now()}
		require.NoError(t, users.Create(ctx, &explicit))
		assert.EqualValues(t, 100, explicit.ID)
		got, err := users.Read(ctx, int64(100))
		require.NoError(t, err)
		assert.Equal(t, "explicit", got.Name)
		require.Error(t, users.Create(ctx, &user{ID: 100, Name: "dup", Created: time.Now()}), "duplicate key")
	})
}

func TestInvalidArguments(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, rec := ready(t, d)
		tests := []struct {
			name string
			want error
			op   func() error
		}{
			{"Read no key", dataflow.ErrInvalidArgument, func() error { _, err := users.Read(ctx); return err }},
			{"Read two keys", dataflow.ErrInvalidArgument, func() error { _, err := users.Read(ctx, 1, 2); return err }},
			{"Read nil key", dataflow.ErrInvalidArgument, func() error { _, err := users.Read(ctx, nil); return err }},
			{"Read typed nil key", dataflow.ErrInvalidArgument, func() error { _, err := users.Read(ctx, (*int64)(nil)); return err }},
			{"Create nil", dataflow.ErrInvalidArgument, func() error { return users.Create(ctx, nil) }},
			{"Update nil", dataflow.ErrInvalidArgument, func() error { return users.Update(ctx, nil) }},
			{"Delete nil", dataflow.ErrInvalidArgument, func() error { return users.Delete(ctx, nil) }},
			{"Upsert nil", dataflow.ErrInvalidArgument, func() error { return users.Upsert(ctx, nil) }},
			{"BulkUpdate nil filter", dataflow.ErrEmptyFilter, func() error {
				_, err := users.BulkUpdate(ctx, nil, map[string]any{"age": 1})
				return err
			}},
			{"BulkUpdate empty filter", dataflow.ErrEmptyFilter, func() error {
				_, err := users.BulkUpdate(ctx, dataflow.Filter{}, map[string]any{"age": 1})
				return err
			}},
			{"BulkUpdate nothing to set", dataflow.ErrInvalidArgument, func() error {
				_, err := users.BulkUpdate(ctx, dataflow.Filter{"id": 1}, nil)
				return err
			}},
			{"BulkDelete nil filter", dataflow.ErrEmptyFilter, func() error { _, err := users.BulkDelete(ctx, nil); return err }},
			{"BulkDelete empty filter", dataflow.ErrEmptyFilter, func() error { _, err := users.BulkDelete(ctx, dataflow.Filter{}); return err }},
			{"List negative limit", dataflow.ErrInvalidArgument, func() error { _, err := users.List(ctx, dataflow.Query{Limit: -1}); return err }},
			{"List negative offset", dataflow.ErrInvalidArgument, func() error { _, err := users.List(ctx, dataflow.Query{Offset: -1}); return err }},
			{"Create unstorable value", dataflow.ErrInvalidArgument, func() error {
				return users.Create(ctx, &user{Name: "x", Meta: map[string]any{"f": func() {}}})
			}},
		}
		seed := user{Name: "seed", Created: time.Now()}
		require.NoError(t, users.Create(ctx, &seed))
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec.reset()
				err := tt.op()
				require.ErrorIs(t, err, tt.want)
				assert.Empty(t, rec.all(), "SQL ran for an invalid call")
			})
		}
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, 1, n, "an invalid call changed rows")
	})
}

func TestNotFound(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, _ := ready(t, d)
		missing := &user{ID: 999, Name: "ghost", Created: time.Now()}
		_, err := users.Read(ctx, int64(999))
		assert.ErrorIs(t, err, dataflow.ErrNotFound, "Read")
		assert.ErrorIs(t, users.Update(ctx, missing), dataflow.ErrNotFound, "Update")
		assert.ErrorIs(t, users.Delete(ctx, missing), dataflow.ErrNotFound, "Delete")
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.Zero(t, n, "Update of a missing row inserted it")
	})
}

func TestUpdateDelete(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, _ := ready(t, d)
		a := user{Name: "ann", Age: 1, Nick: ptr("a"), Created: time.Now()}
		b := user{Name: "bob", Age: 2, Created: time.Now()}
		require.NoError(t, users.Create(ctx, &a))
		require.NoError(t, users.Create(ctx, &b))
		a.Age, a.Nick, a.Score = 10, nil, 1.25
		require.NoError(t, users.Update(ctx, &a))
		got, err := users.Read(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, 10, got.Age)
		assert.Nil(t, got.Nick)
		assert.InDelta(t, 1.25, got.Score, 0)
		other, err := users.Read(ctx, b.ID)
		require.NoError(t, err)
		assert.Equal(t, 2, other.Age, "Update touched another row")

		require.NoError(t, users.Delete(ctx, &user{ID: a.ID}))
		_, err = users.Read(ctx, a.ID)
		assert.ErrorIs(t, err, dataflow.ErrNotFound)
		assert.ErrorIs(t, users.Delete(ctx, &user{ID: a.ID}), dataflow.ErrNotFound, "second Delete")
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
	})
}

func TestUpsert(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, _ := ready(t, d)
		u := user{ID: 42, Name: "ann", Age: 1, Created: time.Now()}
		require.NoError(t, users.Upsert(ctx, &u), "insert")
		got, err := users.Read(ctx, int64(42))
		require.NoError(t, err)
		assert.Equal(t, "ann", got.Name)

		u.Name, u.Age, u.Nick = "ann2", 2, ptr("nick")
		require.NoError(t, users.Upsert(ctx, &u), "update")
		got, err = users.Read(ctx, int64(42))
		require.NoError(t, err)
		assert.Equal(t, "ann2", got.Name)
		assert.Equal(t, 2, got.Age)
		assert.Equal(t, ptr("nick"), got.Nick)

		gen := user{Name: "generated", Created: time.Now()}
		require.NoError(t, users.Upsert(ctx, &gen), "upsert without a key inserts")
		assert.NotZero(t, gen.ID)
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, 2, n)
	})
}

// membership has a composite primary key.
type membership struct {
	OrgID  int64  `bun:"org_id,pk"`
	UserID int64  `bun:"user_id,pk"`
	Role   string `bun:"role,notnull"`
}

func TestCompositePrimaryKey(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db := open(t, d.URL(t))
		m := register[membership](t, db)
		for _, r := range []membership{{1, 1, "admin"}, {1, 2, "member"}, {2, 1, "owner"}} {
			require.NoError(t, m.Create(ctx, &r))
		}
		require.Error(t, m.Create(ctx, &membership{1, 2, "dup"}), "duplicate composite key")

		got, err := m.Read(ctx, int64(1), int64(2))
		require.NoError(t, err)
		assert.Equal(t, membership{1, 2, "member"}, *got)
		_, err = m.Read(ctx, int64(2), int64(2))
		assert.ErrorIs(t, err, dataflow.ErrNotFound)
		_, err = m.Read(ctx, int64(1))
		assert.ErrorIs(t, err, dataflow.ErrInvalidArgument, "one of two key values")

		require.NoError(t, m.Update(ctx, &membership{1, 2, "editor"}))
		require.NoError(t, m.Upsert(ctx, &membership{2, 1, "viewer"}))
		require.NoError(t, m.Upsert(ctx, &membership{3, 3, "new"}))
		require.NoError(t, m.Delete(ctx, &membership{OrgID: 1, UserID: 1}))
		assert.ErrorIs(t, m.Delete(ctx, &membership{OrgID: 1, UserID: 1}), dataflow.ErrNotFound)
		assert.ErrorIs(t, m.Update(ctx, &membership{9, 9, "x"}), dataflow.ErrNotFound)

		list, err := m.List(ctx, dataflow.Query{}) // default order: the key
		require.NoError(t, err)
		assert.Equal(t, []membership{{1, 2, "editor"}, {2, 1, "viewer"}, {3, 3, "new"}}, list)

		require.NoError(t, m.BulkUpsert(ctx, []membership{{1, 2, "bulk"}, {4, 4, "bulk"}}))
		n, err := m.Count(ctx, dataflow.Filter{"role": "bulk"})
		require.NoError(t, err)
		assert.Equal(t, 2, n)
	})
}

// event has times, a JSON map and nullable pointers.
type event struct {
	ID    int64          `bun:"id,pk,autoincrement"`
	At    time.Time      `bun:"at,notnull"`
	Maybe *time.Time     `bun:"maybe"`
	Note  *string        `bun:"note"`
	Count *int64         `bun:"count"`
	Data  map[string]any `bun:"data"`
	Tags  []string       `bun:"tags"`
}

func TestRoundTrip(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	exact := time.Date(2024, 2, 29, 23, 59, 58, 123456000, ist) // microseconds
	tests := []struct {
		name string
		in   event
	}{
		{"zero values", event{At: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"time in another zone", event{At: exact}},
		{"time far past", event{At: time.Date(1901, 12, 13, 20, 45, 52, 1000, time.UTC)}},
		{"time far future", event{At: time.Date(2999, 12, 31, 23, 59, 59, 999999000, time.UTC)}},
		{"pointers set", event{At: exact, Maybe: ptr(exact.Add(time.Hour)), Note: ptr("note"), Count: ptr(int64(-7))}},
		{"pointers to zero values", event{At: exact, Maybe: ptr(time.Time{}.Add(time.Hour)), Note: ptr(""), Count: ptr(int64(0))}},
		{"map", event{At: exact, Data: map[string]any{
			"s": "x", "n": 1.5, "b": true, "null": nil, "list": []any{"a", 2.0}, "obj": map[string]any{"k": "v"}, "unicode": "日本 ✓",
		}}},
		{"empty map", event{At: exact, Data: map[string]any{}}},
		{"slice", event{At: exact, Tags: []string{"a", "b,c", `"q"`}}},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db := open(t, d.URL(t))
		events := register[event](t, db)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				in := tt.in
				require.NoError(t, events.Create(ctx, &in))
				got, err := events.Read(ctx, in.ID)
				require.NoError(t, err)
				assertTime(t, tt.in.At, got.At)
				if tt.in.Maybe == nil {
					assert.Nil(t, got.Maybe)
				} else if assert.NotNil(t, got.Maybe) {
					assertTime(t, *tt.in.Maybe, *got.Maybe)
				}
				assert.Equal(t, tt.in.Note, got.Note)
				assert.Equal(t, tt.in.Count, got.Count)
				assert.Equal(t, tt.in.Data, got.Data)
				assert.Equal(t, tt.in.Tags, got.Tags)

				want := tt.in.At.UTC().Format("2006-01-02 15:04:05.000000") + "|+00:00"
				assert.Equal(t, want, storedUTC(t, ctx, db, d.Name, events.Name(), in.ID), "stored time, in UTC")

				list, err := events.List(ctx, dataflow.Query{Filter: dataflow.Filter{"at": tt.in.At, "id": in.ID}})
				require.NoError(t, err)
				if assert.Len(t, list, 1, "equality filter on the stored time") {
					assertTime(t, tt.in.At, list[0].At)
				}
			})
		}
	})
}

// assertTime checks a time read back: the same instant, to the
// microsecond at least.
func assertTime(t *testing.T, want, got time.Time) {
	t.Helper()
	assert.True(t, want.Truncate(time.Microsecond).Equal(got.Truncate(time.Microsecond)), "time: got %v; want %v", got, want)
	assert.Equal(t, time.UTC, got.Location(), "times read back are in UTC on every dialect")
}

// storedUTC returns the column at of row id as the database holds it, in
// UTC, to the microsecond: "2006-01-02 15:04:05.000000".
func storedUTC(t *testing.T, ctx context.Context, db *dataflow.DB, dialect string, table string, id int64) string {
	t.Helper()
	q := `SELECT substr(at, 1, 26) || '|' || substr(at, 30) FROM "` + table + `" WHERE id = ?`
	switch dialect {
	case "pg":
		q = `SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '|+00:00' FROM "` + table + `" WHERE id = ?`
	case "mysql": // DATETIME(6) holds the UTC wall clock
		q = "SELECT CONCAT(DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), '|+00:00') FROM `" + table + "` WHERE id = ?"
	}
	rows, err := db.QueryContext(ctx, db.Rebind(q), id)
	require.NoError(t, err)
	var s string
	require.NoError(t, db.ScanRows(ctx, rows, &s))
	return s
}

func TestBulkOperations(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, _ := ready(t, d)
		in := []user{
			{Name: "a", Age: 1, Created: time.Now()},
			{Name: "b", Age: 2, Created: time.Now()},
			{Name: "c", Age: 3, Created: time.Now()},
		}
		require.NoError(t, users.BulkCreate(ctx, in))
		for _, u := range in {
			require.NotZero(t, u.ID, "generated id of %s not read back", u.Name)
			got, err := users.Read(ctx, u.ID)
			require.NoError(t, err)
			assert.Equal(t, u.Name, got.Name, "id %d", u.ID)
		}

		n, err := users.BulkUpdate(ctx, dataflow.Filter{"age": dataflow.Gte(2)}, map[string]any{"age": 20, "nick": "big"})
		require.NoError(t, err)
		assert.EqualValues(t, 2, n)
		list, err := users.List(ctx, dataflow.Query{Filter: dataflow.Filter{"nick": "big"}})
		require.NoError(t, err)
		assert.Equal(t, []string{"b", "c"}, names(list))
		assert.Equal(t, 20, list[0].Age)

		n, err = users.BulkUpdate(ctx, dataflow.Filter{"name": "zzz"}, map[string]any{"age": 0})
		require.NoError(t, err)
		assert.Zero(t, n, "no row matched")

		in[0].Name = "a2"
		require.NoError(t, users.BulkUpsert(ctx, []user{in[0], {ID: 500, Name: "new", Created: time.Now()}}))
		got, err := users.Read(ctx, in[0].ID)
		require.NoError(t, err)
		assert.Equal(t, "a2", got.Name)
		_, err = users.Read(ctx, int64(500))
		require.NoError(t, err)

		n, err = users.BulkDelete(ctx, dataflow.Filter{"age": 20})
		require.NoError(t, err)
		assert.EqualValues(t, 2, n)
		c, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, 2, c)
	})
}

// Rows of one bulk call may mix generated and explicit keys.
func TestBulkMixedGeneratedKeys(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, _ := ready(t, d)
		in := []user{
			{Name: "gen1", Created: time.Now()},
			{ID: 1000, Name: "explicit", Created: time.Now()},
			{Name: "gen2", Created: time.Now()},
		}
		require.NoError(t, users.BulkCreate(ctx, in))
		assert.EqualValues(t, 1000, in[1].ID)
		for _, u := range in {
			require.NotZero(t, u.ID, "id of %s not read back", u.Name)
			got, err := users.Read(ctx, u.ID)
			require.NoError(t, err)
			assert.Equal(t, u.Name, got.Name)
		}
		up := []user{{Name: "gen3", Created: time.Now()}, {ID: 1000, Name: "explicit2", Created: time.Now()}}
		require.NoError(t, users.BulkUpsert(ctx, up))
		assert.NotZero(t, up[0].ID)
		got, err := users.Read(ctx, int64(1000))
		require.NoError(t, err)
		assert.Equal(t, "explicit2", got.Name)
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, 4, n)
	})
}
