package dataflow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A filter, order or set naming a column the model lacks fails before any
// SQL runs, even before the table is ensured.
func TestUnknownColumnRunsNoSQL(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db, rec := openRec(t, d.URL(t))
		users := register[user](t, db)
		tests := []struct {
			name string
			op   func() error
		}{
			{"List filter", func() error {
				_, err := users.List(ctx, dataflow.Query{Filter: dataflow.Filter{"nope": 1}})
				return err
			}},
			{"List filter Go field name", func() error {
				_, err := users.List(ctx, dataflow.Query{Filter: dataflow.Filter{"Name": "x"}})
				return err
			}},
			{"List filter quoted", func() error {
				_, err := users.List(ctx, dataflow.Query{Filter: dataflow.Filter{`name" = 'x' OR 1=1 --`: "x"}})
				return err
			}},
			{"List order", func() error { _, err := users.List(ctx, dataflow.Query{OrderBy: []string{"nope"}}); return err }},
			{"List order desc", func() error { _, err := users.List(ctx, dataflow.Query{OrderBy: []string{"age", "-nope"}}); return err }},
			{"List order injection", func() error {
				_, err := users.List(ctx, dataflow.Query{OrderBy: []string{"age; DROP TABLE users"}})
				return err
			}},
			{"Count", func() error { _, err := users.Count(ctx, dataflow.Filter{"age": 1, "nope": 1}); return err }},
			{"BulkUpdate filter", func() error {
				_, err := users.BulkUpdate(ctx, dataflow.Filter{"nope": 1}, map[string]any{"age": 1})
				return err
			}},
			{"BulkUpdate set", func() error {
				_, err := users.BulkUpdate(ctx, dataflow.Filter{"age": 1}, map[string]any{"nope": 1})
				return err
			}},
			{"BulkDelete", func() error {
				_, err := users.BulkDelete(ctx, dataflow.Filter{"nope": dataflow.IsNull(true)})
				return err
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec.reset()
				require.ErrorIs(t, tt.op(), dataflow.ErrUnknownColumn)
				assert.Empty(t, rec.all(), "SQL ran")
			})
		}
		assert.Zero(t, db.Stats().EnsureRuns, "the table was ensured for an invalid call")
	})
}

// seedFilter stores four users and returns their creation times.
func seedFilter(t *testing.T, ctx context.Context, users *dataflow.Table[user]) []time.Time {
	t.Helper()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	in := []user{
		{Name: "ann", Age: 10, Nick: ptr("a"), Score: 1.5, Created: base},
		{Name: "bob", Age: 20, Score: 2.5, Created: base.Add(time.Microsecond)},
		{Name: "cy", Age: 30, Nick: ptr("c"), Score: 3.5, Created: base.Add(time.Second)},
		{Name: "dee", Age: 40, Score: 0, Created: base.Add(time.Hour)},
	}
	times := make([]time.Time, len(in))
	for i := range in {
		require.NoError(t, users.Create(ctx, &in[i]))
		times[i] = in[i].Created
	}
	return times
}

func TestFilterOperators(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, rec := ready(t, d)
		times := seedFilter(t, ctx, users)
		tests := []struct {
			name   string
			filter dataflow.Filter
			want   []string
		}{
			{"none", nil, []string{"ann", "bob", "cy", "dee"}},
			{"equal string", dataflow.Filter{"name": "bob"}, []string{"bob"}},
			{"equal int", dataflow.Filter{"age": 30}, []string{"cy"}},
			{"equal no match", dataflow.Filter{"name": "zed"}, []string{}},
			{"Gt", dataflow.Filter{"age": dataflow.Gt(20)}, []string{"cy", "dee"}},
			{"Gte", dataflow.Filter{"age": dataflow.Gte(20)}, []string{"bob", "cy", "dee"}},
			{"Lt", dataflow.Filter{"age": dataflow.Lt(20)}, []string{"ann"}},
			{"Lte", dataflow.Filter{"age": dataflow.Lte(20)}, []string{"ann", "bob"}},
			{"Ne", dataflow.Filter{"age": dataflow.Ne(20)}, []string{"ann", "cy", "dee"}},
			{"Ne nil", dataflow.Filter{"nick": dataflow.Ne(nil)}, []string{"ann", "cy"}},
			{"Ne string skips NULL", dataflow.Filter{"nick": dataflow.Ne("a")}, []string{"cy"}},
			{"In empty", dataflow.Filter{"age": dataflow.In[int]()}, []string{}},
			{"In ints", dataflow.Filter{"age": dataflow.In(10, 40, 99)}, []string{"ann", "dee"}},
			{"In strings", dataflow.Filter{"name": dataflow.In("bob", "zed")}, []string{"bob"}},
			{"Like prefix", dataflow.Filter{"name": dataflow.Like("b%")}, []string{"bob"}},
			{"Like suffix", dataflow.Filter{"name": dataflow.Like("%e")}, []string{"dee"}},
			{"Like one char", dataflow.Filter{"name": dataflow.Like("c_")}, []string{"cy"}},
			{"IsNull true", dataflow.Filter{"nick": dataflow.IsNull(true)}, []string{"bob", "dee"}},
			{"IsNull false", dataflow.Filter{"nick": dataflow.IsNull(false)}, []string{"ann", "cy"}},
			{"nil equality", dataflow.Filter{"nick": nil}, []string{"bob", "dee"}},
			{"typed nil equality", dataflow.Filter{"nick": (*string)(nil)}, []string{"bob", "dee"}},
			{"pointer value equality", dataflow.Filter{"nick": ptr("c")}, []string{"cy"}},
			{"pointer to Op", dataflow.Filter{"age": ptr(dataflow.Gt(30))}, []string{"dee"}},
			{"float", dataflow.Filter{"score": dataflow.Gt(2.0)}, []string{"bob", "cy"}},
			{"float equal zero", dataflow.Filter{"score": 0.0}, []string{"dee"}},
			{"time equal", dataflow.Filter{"created": times[1]}, []string{"bob"}},
			{"time Gt microsecond apart", dataflow.Filter{"created": dataflow.Gt(times[0])}, []string{"bob", "cy", "dee"}},
			{"time Lt other zone", dataflow.Filter{"created": dataflow.Lt(times[2].In(time.FixedZone("X", -7*3600)))}, []string{"ann", "bob"}},
			{"AND", dataflow.Filter{"age": dataflow.Gte(20), "nick": dataflow.IsNull(true)}, []string{"bob", "dee"}},
			{"AND three", dataflow.Filter{"age": dataflow.Lt(40), "score": dataflow.Gt(1.0), "name": dataflow.Ne("bob")}, []string{"ann", "cy"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec.reset()
				got, err := users.List(ctx, dataflow.Query{Filter: tt.filter})
				require.NoError(t, err)
				assert.Equal(t, tt.want, names(got), "List")
				n, err := users.Count(ctx, tt.filter)
				require.NoError(t, err)
				assert.Equal(t, len(tt.want), n, "Count")
				assert.Equal(t, 2, rec.counts().Total, "List+Count statements: %v", rec.counts())
			})
		}
	})
}

func TestFilterInvalidValues(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, rec := ready(t, d)
		tests := []struct {
			name   string
			filter dataflow.Filter
		}{
			{"In with nil", dataflow.Filter{"nick": dataflow.In[any]("a", nil)}},
			{"Gt nil", dataflow.Filter{"age": dataflow.Gt(nil)}},
			{"Lte nil", dataflow.Filter{"age": dataflow.Lte(nil)}},
			{"slice value", dataflow.Filter{"age": []int{1, 2}}},
			{"map value", dataflow.Filter{"meta": map[string]any{"a": 1}}},
			{"zero Op", dataflow.Filter{"age": dataflow.Op{}}},
			{"unstorable value", dataflow.Filter{"name": make(chan int)}},
			{"nested In(Like)", dataflow.Filter{"name": dataflow.In(dataflow.Like("%"))}},
			{"nested Ne(Gt)", dataflow.Filter{"name": dataflow.Ne(dataflow.Gt("a"))}},
			{"In of *Op", dataflow.Filter{"name": dataflow.In(new(dataflow.Op))}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec.reset()
				_, err := users.List(ctx, dataflow.Query{Filter: tt.filter})
				require.ErrorIs(t, err, dataflow.ErrInvalidArgument, "List")
				_, err = users.Count(ctx, tt.filter)
				require.ErrorIs(t, err, dataflow.ErrInvalidArgument, "Count")
				_, err = users.BulkDelete(ctx, tt.filter)
				require.ErrorIs(t, err, dataflow.ErrInvalidArgument, "BulkDelete")
				assert.Empty(t, rec.all(), "SQL ran")
			})
		}
	})
}

// hostile strings: each must be stored and matched as a value, never as SQL.
var hostile = []string{
	`x'); DROP TABLE users; --`,
	`' OR '1'='1`,
	`"; DELETE FROM users; --`,
	`\'; SELECT 1; --`,
	`$1 ? ?? :name @p1 %s`,
	`/* comment */ 'x' -- tail`,
	`Robert'); DROP TABLE students;--`,
	"tab\there\nnew line\r\n",
	`%_\%`,
	"ünïcødé ✓ 日本語 🙂",
	`''''`,
}

// assertBound checks that the one recorded statement carries v as a bound
// parameter and not in its text.
func assertBound(t *testing.T, rec *recorder, v string) {
	t.Helper()
	stmts := rec.all()
	require.Len(t, stmts, 1, "statements: %v", stmts)
	assert.NotContains(t, stmts[0].Query, v, "value in the SQL text")
	assert.Contains(t, stmts[0].Args, any(v), "value not among the bound parameters")
}

func TestValuesAreBoundParameters(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, rec := ready(t, d)
		for i, s := range hostile {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				u := user{Name: s, Nick: ptr(s), Created: time.Now(), Meta: map[string]any{"k": s}}
				rec.reset()
				require.NoError(t, users.Create(ctx, &u))
				assertBound(t, rec, s)

				got, err := users.Read(ctx, u.ID)
				require.NoError(t, err)
				assert.Equal(t, []byte(s), []byte(got.Name), "name, byte for byte")
				if assert.NotNil(t, got.Nick) {
					assert.Equal(t, []byte(s), []byte(*got.Nick), "nick, byte for byte")
				}
				assert.Equal(t, s, got.Meta["k"], "JSON value")

				filters := map[string]dataflow.Filter{
					"equal": {"name": s},
					"In":    {"name": dataflow.In(s)},
					"Gte":   {"name": dataflow.Gte(s), "id": u.ID},
					"Like":  {"name": dataflow.Like(s), "id": u.ID},
				}
				for fname, f := range filters {
					rec.reset()
					list, err := users.List(ctx, dataflow.Query{Filter: f})
					require.NoError(t, err, fname)
					assertBound(t, rec, s)
					if fname != "Like" { // % and _ in s are wildcards there
						assert.Equal(t, []int64{u.ID}, ids(list), "%s: rows", fname)
					}
				}

				rec.reset()
				n, err := users.BulkUpdate(ctx, dataflow.Filter{"name": s}, map[string]any{"nick": s + "!"})
				require.NoError(t, err)
				assert.EqualValues(t, 1, n)
				assertBound(t, rec, s)
				assert.Contains(t, rec.all()[0].Args, any(s+"!"))
			})
		}
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, len(hostile), n, "rows after hostile values (was a table dropped?)")
		for _, s := range hostile {
			n, err := users.Count(ctx, dataflow.Filter{"nick": s + "!"})
			require.NoError(t, err)
			assert.Equal(t, 1, n, "%q", s)
		}
		rec.reset()
		n64, err := users.BulkDelete(ctx, dataflow.Filter{"name": hostile[0]})
		require.NoError(t, err)
		assert.EqualValues(t, 1, n64)
		assertBound(t, rec, hostile[0])
	})
}

func ids(us []user) []int64 {
	out := make([]int64, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

func TestListOrderLimitOffset(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, rec := ready(t, d)
		for _, u := range []user{{Name: "a", Age: 30}, {Name: "b", Age: 10}, {Name: "c", Age: 50}, {Name: "d", Age: 10}, {Name: "e", Age: 40}} {
			u.Created = time.Now()
			require.NoError(t, users.Create(ctx, &u))
		}
		tests := []struct {
			name string
			q    dataflow.Query
			want []string
		}{
			{"default: primary key", dataflow.Query{}, []string{"a", "b", "c", "d", "e"}},
			{"asc", dataflow.Query{OrderBy: []string{"age", "name"}}, []string{"b", "d", "a", "e", "c"}},
			{"desc", dataflow.Query{OrderBy: []string{"-age"}}, []string{"c", "e", "a", "b", "d"}},
			{"mixed", dataflow.Query{OrderBy: []string{"age", "-name"}}, []string{"d", "b", "a", "e", "c"}},
			{"limit", dataflow.Query{Limit: 2}, []string{"a", "b"}},
			{"limit offset", dataflow.Query{OrderBy: []string{"-age"}, Limit: 2, Offset: 1}, []string{"e", "a"}},
			{"offset without limit", dataflow.Query{Offset: 3}, []string{"d", "e"}},
			{"offset past the end", dataflow.Query{Offset: 10}, []string{}},
			{"limit past the end", dataflow.Query{Limit: 10, Offset: 4}, []string{"e"}},
			{"filter order limit", dataflow.Query{Filter: dataflow.Filter{"age": dataflow.Lt(45)}, OrderBy: []string{"-name"}, Limit: 3}, []string{"e", "d", "b"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec.reset()
				got, err := users.List(ctx, tt.q)
				require.NoError(t, err)
				assert.Equal(t, tt.want, names(got))
				assert.Equal(t, 1, rec.counts().Total)
			})
		}
		t.Run("errors", func(t *testing.T) {
			rec.reset()
			_, err := users.List(ctx, dataflow.Query{OrderBy: []string{"-nope"}})
			assert.ErrorIs(t, err, dataflow.ErrUnknownColumn)
			_, err = users.List(ctx, dataflow.Query{Limit: -1})
			assert.ErrorIs(t, err, dataflow.ErrInvalidArgument)
			_, err = users.List(ctx, dataflow.Query{Limit: 1, Offset: -1})
			assert.ErrorIs(t, err, dataflow.ErrInvalidArgument)
			assert.Empty(t, rec.all())
		})
	})
}
