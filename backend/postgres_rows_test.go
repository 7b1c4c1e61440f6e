package backend

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/turnkeep/turnkeep/driver"
)

// oldRow and oldRows are the encoding appendPGRows replaced (turnkeep
// 2e761bd): encoding/json of every field, the stored JSON as strings.
type oldRow struct {
	Pos        int32   `json:"pos"`
	ID         string  `json:"id"`
	Role       string  `json:"role"`
	Content    string  `json:"content"`
	Name       string  `json:"name"`
	ToolCalls  *string `json:"tool_calls"`
	ToolCallID string  `json:"tool_call_id"`
	Parts      *string `json:"parts"`
	Meta       *string `json:"meta"`
	Tokens     int64   `json:"tokens"`
	Search     *string `json:"search"`
}

func oldRows(t *testing.T, msgs []driver.PreparedMessage, first int32) []oldRow {
	text := func(b []byte) *string {
		if b == nil {
			return nil
		}
		s := string(b)
		return &s
	}
	rows := make([]oldRow, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		rows[i] = oldRow{Pos: first + int32(i), ID: m.ID, Role: string(m.Role), Content: m.Content, Name: m.Name,
			ToolCalls: text(m.ToolCallsJSON), ToolCallID: m.ToolCallID, Parts: text(m.PartsJSON), Meta: text(m.MetadataJSON),
			Tokens: int64(m.Tokens), Search: text([]byte(driver.SearchText(m.Content)))}
		if *rows[i].Search == "" {
			rows[i].Search = nil
		}
	}
	// What PostgreSQL reads back is the decoded form: round-trip it.
	data, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	var back []oldRow
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	return back
}

// readPGRows decodes appendPGRows's output as json_to_recordset reads it
// into TEXT columns: a string's contents, or a nested value's exact text.
func readPGRows(t *testing.T, data []byte) []oldRow {
	t.Helper()
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("appendPGRows wrote invalid JSON: %v\n%s", err, data)
	}
	rows := make([]oldRow, len(raw))
	for i, r := range raw {
		if len(r) != 11 {
			t.Fatalf("row %d has %d keys; want 11: %s", i, len(r), data)
		}
		text := func(key string) *string {
			v, ok := r[key]
			if !ok {
				t.Fatalf("row %d has no key %q", i, key)
			}
			switch v[0] {
			case 'n':
				return nil
			case '"':
				var s string
				if err := json.Unmarshal(v, &s); err != nil {
					t.Fatal(err)
				}
				return &s
			}
			s := string(v)
			return &s
		}
		str := func(key string) string {
			p := text(key)
			if p == nil {
				t.Fatalf("row %d: %s is null", i, key)
			}
			return *p
		}
		num := func(key string) int64 {
			var n int64
			if err := json.Unmarshal(r[key], &n); err != nil {
				t.Fatalf("row %d: %s: %v", i, key, err)
			}
			return n
		}
		rows[i] = oldRow{Pos: int32(num("pos")), ID: str("id"), Role: str("role"), Content: str("content"), Name: str("name"),
			ToolCalls: text("tool_calls"), ToolCallID: str("tool_call_id"), Parts: text("parts"), Meta: text("meta"),
			Tokens: num("tokens"), Search: text("search")}
	}
	return rows
}

func samePGRows(t *testing.T, msgs []driver.PreparedMessage, first int32) {
	t.Helper()
	want := oldRows(t, msgs, first)
	got := readPGRows(t, appendPGRows(nil, msgs, first))
	if len(got) != len(want) {
		t.Fatalf("got %d rows; want %d", len(got), len(want))
	}
	eq := func(a, b *string) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	for i := range want {
		g, w := got[i], want[i]
		if g.Pos != w.Pos || g.ID != w.ID || g.Role != w.Role || g.Content != w.Content || g.Name != w.Name ||
			g.ToolCallID != w.ToolCallID || g.Tokens != w.Tokens ||
			!eq(g.ToolCalls, w.ToolCalls) || !eq(g.Parts, w.Parts) || !eq(g.Meta, w.Meta) || !eq(g.Search, w.Search) {
			t.Fatalf("row %d:\ngot  %+v\nwant %+v", i, g, w)
		}
	}
}

func TestAppendPGRowsReadsAsBefore(t *testing.T) {
	turn, err := driver.Prepare(driver.Turn{Messages: []driver.Message{
		{Role: driver.RoleUser, Content: "Hello \"world\" \\ tab\t nl\n cr\r \x01 <b>&amp; \u2028 ünï 世界 😀", Name: "ann\x7f"},
		{Role: driver.RoleAssistant, Content: "", ToolCalls: []driver.ToolCall{{ID: "c1", Name: "get", Arguments: `{"q": "x\"y", "n": [1, 2.5e3]}`}}},
		{Role: driver.RoleTool, Content: "42 ° .", ToolCallID: "c1", Metadata: map[string]any{"k": "v\n", "n": 1.5, "a": []any{true, nil}}},
		{Role: driver.RoleUser, Content: "see", Parts: []driver.Part{{Type: "image", URL: "https://x/y?a=1&b=2", Data: []byte{0, 1, 2}}}},
	}}, now(), driver.DefaultMaxMessageBytes, nil)

	if err != nil {
		t.Fatal(err)
	}
	samePGRows(t, turn.Encoded, 0)
	samePGRows(t, turn.Encoded[1:], 7)
	samePGRows(t, nil, 0)

	// Fields of a PreparedMessage made by hand, not one JSON array or
	// object, and invalid UTF-8, go as strings.
	samePGRows(t, []driver.PreparedMessage{{Message: driver.Message{ID: "x\xffy", Role: "user", Content: "a\xffb\xc3"},
		ToolCallsJSON: []byte("null"), PartsJSON: []byte(`"s"`), MetadataJSON: []byte(`{"a":1} {"b":2}`)},
		{Message: driver.Message{ID: "z", Role: "user", Content: "x"}, ToolCallsJSON: []byte("[1"), PartsJSON: []byte("{}x}"), MetadataJSON: []byte{}}}, 0)
}

func FuzzAppendPGRows(f *testing.F) {
	f.Add("Hello, 世界", "id", `[{"id":"a"}]`, "\x00\x1f\"\\\xff")
	f.Fuzz(func(t *testing.T, content, id, calls, name string) {
		var c []byte
		if calls != "" {
			c = []byte(calls)
		}
		samePGRows(t, []driver.PreparedMessage{{Message: driver.Message{ID: id, Role: "user", Content: content, Name: name}, ToolCallsJSON: c}}, 3)
	})
}

func TestAppendPGRowsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 17))
	pieces := []string{"a", "Z", " ", "\"", "\\", "\n", "\x00", "\x1f", "\x7f", "é", "世", "\xff", "\u2028", "<", "&", "😀", `{"a":1}`, "[", "]"}
	gen := func() string {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for range 5000 {
		var calls []byte
		if rng.IntN(2) == 0 {
			calls = []byte(gen())
			if len(calls) == 0 {
				calls = nil
			}
		}
		samePGRows(t, []driver.PreparedMessage{{Message: driver.Message{ID: gen(), Role: driver.Role(gen()), Content: gen(), Name: gen(), ToolCallID: gen()}, ToolCallsJSON: calls}}, 0)
	}
}

// BenchmarkPGRows is the client's work to encode a save's two messages
// for the PostgreSQL statement: the encoding/json form it replaced
// (driver.SearchText before internal/searchtext is not in it: see
// internal/searchtext's BenchmarkText) beside appendPGRows.
//
//	go test -run '^$' -bench 'BenchmarkPGRows' ./backend/
func BenchmarkPGRows(b *testing.B) {
	turn, err := driver.Prepare(driver.Turn{
		User:  strings.Repeat("How do I rotate the API keys of a staging project? ", 2)[:100],
		Agent: strings.Repeat("Open the project settings, choose Keys, create a new key, deploy it, then revoke the old one. ", 4)[:300],
	}, now(), driver.DefaultMaxMessageBytes, nil)

	if err != nil {
		b.Fatal(err)
	}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rows := make([]oldRow, len(turn.Encoded))
			for i := range turn.Encoded {
				m := &turn.Encoded[i]
				search := driver.SearchText(m.Content)
				rows[i] = oldRow{Pos: int32(i), ID: m.ID, Role: string(m.Role), Content: m.Content, Search: &search, Tokens: int64(m.Tokens)}
			}
			if _, err := json.Marshal(rows); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendPGRows", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonRows(turn.Encoded, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
