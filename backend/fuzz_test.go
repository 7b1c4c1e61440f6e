package backend_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite" // registers "sqlite"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// fuzzMaxBytes is the message size limit of FuzzSaveLoad: the one a
// backend applies to turns no memory prepared (a seed crosses it).
const fuzzMaxBytes = driver.DefaultMaxMessageBytes

// fuzzTimestamp is the Timestamp of every fuzzed turn: finer than a
// microsecond, so the truncation is exercised.
var fuzzTimestamp = time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.UTC)

// FuzzSaveLoad saves a turn of fuzzed session ID, messages and metadata
// through DataFlowBackend, on one SQLite file per fuzzing process, and
// loads it back. Either the save fails with the typed error that
// driver.ValidateSessionKey or driver.PrepareTurn gives for the input and
// stores nothing, or it succeeds, stores exactly the turn's messages (one
// for each of user and agent that is not empty), bumps the session's turn
// count by one, and LoadWindow returns exactly the turn PrepareTurn
// produced.
//
// shape selects the metadata: 0 none, 1 {key: value}, 2 value nested in
// maps and an array, 3 value parsed as JSON when it is JSON (any structure
// or number), 4 an empty map.
func FuzzSaveLoad(f *testing.F) {
	f.Add("s", "hello", "hi there", "k", "v", byte(1))
	f.Add("s", "", "only the agent", "", "", byte(0))
	f.Add("'; DROP TABLE turnkeep_messages; --", `" OR 1=1 --`, "$1 ? %_ \\", "'", `\x27`, byte(2))
	f.Add("日本語", "😀 ɐ́́́ \u202e", "\u2028\ufffd", "ключ", "значение", byte(1))
	f.Add("s", "u", "a", "k", `{"a":[1,2.5,"x",null,true,{"b":-1e300}]}`, byte(3))
	f.Add("s", "u", "a", "k", "12345678901234567890", byte(3))
	f.Add("s", "u", "a", "k", `"\u0000"`, byte(3))
	f.Add("s", "u", "a", "k", `"\ud800"`, byte(3))
	f.Add("s", "u", "a", "k", "v", byte(4))
	f.Add("s", "bad \xff utf-8", "a", "k", "v", byte(0))
	f.Add("s", "nul \x00", "a", "k", "v", byte(0))
	f.Add("s", "u", "a", "key \xfe", "v", byte(1))
	f.Add("s", "u", "a", "k", "value \x00", byte(1))
	f.Add("", "u", "a", "k", "v", byte(0))
	f.Add("session \x00", "u", "a", "k", "v", byte(0))
	f.Add("s", string(make([]byte, fuzzMaxBytes+1)), "a", "k", "v", byte(0))

	ctx := context.Background()
	db, err := dataflow.Open(ctx, "sqlite:///"+filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	be, err := backend.NewDataFlowBackend(db)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := readWindow(ctx, be, "setup", 1); err != nil { // creates the tables
		f.Fatal(err)
	}
	var seq atomic.Int64 // makes every turn ID new

	f.Fuzz(func(t *testing.T, session, user, agent, key, value string, shape byte) {
		turn := driver.Turn{
			ID:        fmt.Sprintf("fuzz-%d", seq.Add(1)),
			User:      user,
			Agent:     agent,
			Timestamp: fuzzTimestamp,
			Metadata:  fuzzMetadata(shape, key, value),
		}
		want, _, prepErr := driver.PrepareTurn(turn, time.Now(), fuzzMaxBytes)
		if prepErr != nil && !errors.Is(prepErr, driver.ErrInvalidTurn) && !errors.Is(prepErr, driver.ErrTurnTooLarge) {
			t.Fatalf("PrepareTurn: untyped error %v", prepErr)
		}
		// The backend takes a session key (tenant U+001F session ID), so
		// the fuzzed string is judged as a key: a separator splits it.
		sessionErr := driver.ValidateSessionKey(session)

		msgsBefore := fuzzCount(ctx, t, db, backend.MessagesTable)
		turnsBefore := 0
		if sessionErr == nil {
			info, err := be.SessionInfo(ctx, session)
			switch {
			case err == nil:
				turnsBefore = info.TurnCount
			case !errors.Is(err, driver.ErrSessionNotFound):
				t.Fatalf("SessionInfo(%q): %v", session, err)
			}
		}

		err := storeTurn(ctx, be, session, turn)
		if sessionErr != nil || prepErr != nil {
			wantErr := sessionErr
			if wantErr == nil {
				wantErr = prepErr
			}
			if !errors.Is(err, fuzzSentinel(wantErr)) {
				t.Fatalf("SaveTurn(%q, %+v): %v; want %v", session, turn, err, wantErr)
			}
			if n := fuzzCount(ctx, t, db, backend.MessagesTable); n != msgsBefore {
				t.Fatalf("a rejected turn changed the messages from %d to %d", msgsBefore, n)
			}
			return
		}
		if err != nil {
			t.Fatalf("SaveTurn(%q, %+v): %v", session, turn, err)
		}
		if n := fuzzCount(ctx, t, db, backend.MessagesTable); n != msgsBefore+len(want.Messages) {
			t.Fatalf("messages went from %d to %d; want +%d", msgsBefore, n, len(want.Messages))
		}

		w, err := readWindow(ctx, be, session, 1)
		if err != nil {
			t.Fatalf("LoadWindow(%q): %v", session, err)
		}
		if w.TurnCount != turnsBefore+1 || len(w.Turns) != 1 {
			t.Fatalf("LoadWindow(%q): %d turns of %d; want 1 of %d", session, len(w.Turns), w.TurnCount, turnsBefore+1)
		}
		got := w.Turns[0]
		if got.ID != want.ID || got.User != want.User || got.Agent != want.Agent ||
			!got.Timestamp.Equal(want.Timestamp) || got.Timestamp.Location() != time.UTC ||
			!reflect.DeepEqual(got.Metadata, want.Metadata) || !reflect.DeepEqual(got.Messages, want.Messages) {
			t.Fatalf("LoadWindow(%q) =\n\t%#v\nwant\n\t%#v", session, got, want)
		}
	})
}

// fuzzMetadata builds the metadata of FuzzSaveLoad (see shape there).
func fuzzMetadata(shape byte, key, value string) map[string]any {
	switch shape % 5 {
	case 1:
		return map[string]any{key: value}
	case 2:
		return map[string]any{key: map[string]any{key: []any{value, 1.5, true, nil}}, "n": -0.25}
	case 3:
		var v any
		if json.Unmarshal([]byte(value), &v) == nil {
			return map[string]any{key: v}
		}
		return map[string]any{key: value}
	case 4:
		return map[string]any{}
	}
	return nil
}

// fuzzSentinel returns the memory sentinel err wraps.
func fuzzSentinel(err error) error {
	for _, s := range []error{driver.ErrInvalidSessionID, driver.ErrInvalidTenant, driver.ErrInvalidTurn, driver.ErrTurnTooLarge} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

func fuzzCount(ctx context.Context, t *testing.T, db *dataflow.DB, table string) int {
	t.Helper()
	var n int
	rows, err := db.QueryContext(ctx, "SELECT count(*) FROM "+table)
	if err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("count %s: no row (%v)", table, rows.Err())
	}
	if err := rows.Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}
