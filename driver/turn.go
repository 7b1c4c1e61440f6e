package driver

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// A Turn is one exchange of a conversation: what the user said and
// everything up to the answer, such as the assistant's tool calls and their
// results.
//
// Set Messages, or the shorthand User and Agent (a user message and an
// assistant message), not both. A turn saved and loaded always has Messages
// filled, and then User is the content of its first user message and Agent
// that of its last assistant message; a turn giving both is accepted when
// they agree so, so a loaded turn can be saved again as it is.
type Turn struct {
	ID        string         // idempotency key; generated (NewTurnID) when empty. Saving the same ID twice stores it once.
	User      string         // shorthand: a user message
	Agent     string         // shorthand: an assistant message
	Messages  []Message      // the whole exchange in order; set this or User/Agent, not both
	Timestamp time.Time      // zero: now; stored in UTC, truncated to microseconds; years 1 to 9999
	Metadata  map[string]any // JSON; round-trips through encoding/json (numbers come back float64)

	// Seq is the turn's 1-based position in its session; loaded turns
	// carry it. On save, when > 0, the turn must land at exactly this
	// position: otherwise ErrConflict and nothing is written. 0: no
	// condition. A turn whose ID the session already holds is stored once
	// and is no conflict, whatever its Seq.
	Seq int
}

// A Window is the recent context of a session. It always holds the
// session's newest turn (when the session has any), even when that turn
// alone is over the token budget: Tokens then exceeds the budget.
type Window struct {
	Turns     []Turn // the newest whole turns, oldest first, within the turn and token limits
	TurnCount int    // every turn the session holds
	Tokens    int    // the tokens of the turns in the window; over the budget only when the newest turn alone is

	// Summary is the session's summary, when the memory has a summarizer
	// and the session has one; nil otherwise.
	Summary *Summary
	// Unsummarized is how many turns older than Turns the Summary does
	// not cover yet: with a summarizer, Summary.Turns + Unsummarized +
	// len(Turns) == TurnCount; 0 without one.
	Unsummarized int
}

// ValidateSessionID returns an error wrapping ErrInvalidSessionID if id is
// empty, longer than MaxSessionIDBytes, not valid UTF-8, or holds a NUL
// byte or U+001F (which separates a tenant from a session ID in a
// SessionKey).
func ValidateSessionID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSessionID)
	}
	if len(id) > MaxSessionIDBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidSessionID, len(id), MaxSessionIDBytes)
	}
	if reason := badText(id); reason != "" {
		return fmt.Errorf("%w: %s", ErrInvalidSessionID, reason)
	}
	if strings.Contains(id, keySeparator) {
		return fmt.Errorf("%w: contains U+001F, the tenant separator", ErrInvalidSessionID)
	}
	return nil
}

// ValidateTurnID returns an error wrapping ErrInvalidTurn for a turn ID no
// stored turn can have: empty, longer than MaxTurnIDBytes, not valid UTF-8
// or holding a NUL byte.
func ValidateTurnID(id string) error {
	if id == "" || len(id) > MaxTurnIDBytes {
		return fmt.Errorf("%w: turn id is %d bytes, want 1 to %d", ErrInvalidTurn, len(id), MaxTurnIDBytes)
	}
	if reason := badText(id); reason != "" {
		return fmt.Errorf("%w: turn id %s", ErrInvalidTurn, reason)
	}
	return nil
}

// NewTurnID returns 128 random bits from crypto/rand as 32 lowercase hex
// characters.
func NewTurnID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never returns an error
	return hex.EncodeToString(b[:])
}

// PrepareTurn validates t and returns it normalized, with the JSON of its
// metadata (nil when there is none). maxMessageBytes <= 0 means
// DefaultMaxMessageBytes.
//
// Errors wrap ErrInvalidTurn (no message; a negative Seq; both Messages and a User or
// Agent that disagrees with them; a message PrepareMessages refuses; NUL
// or invalid UTF-8 in any text; an ID longer than MaxTurnIDBytes; message
// IDs repeated; metadata nested more than MaxMetadataDepth levels, or
// that encoding/json cannot encode or decode back; a Timestamp outside the
// years 1 to 9999 in UTC) or ErrTurnTooLarge (a message, its tool calls,
// parts or metadata, or the turn's metadata JSON over maxMessageBytes;
// more than MaxTurnMessages messages).
//
// Normalization: an empty ID becomes NewTurnID(); User and Agent become
// Messages; an empty message ID becomes DerivedMessageID(turn ID,
// position); tokens are counted with DefaultTokenCounter; a zero Timestamp
// becomes now, the Timestamp is made UTC and truncated to microseconds;
// Metadata is replaced by its JSON round trip, so the caller's maps are
// never aliased and the turn equals what a database read returns. Empty
// metadata, parts and tool calls are nil.
func PrepareTurn(t Turn, now time.Time, maxMessageBytes int) (Turn, []byte, error) {
	p, err := Prepare(t, now, maxMessageBytes, nil)
	return p.Turn, p.Metadata, err
}

// A PreparedTurn is a turn validated and normalized by Prepare, with the
// JSON of its metadata and its messages encoded, so that it is validated
// and encoded once per save: a Backend given one that Prepare made stores
// it as it is, and validates any other itself.
type PreparedTurn struct {
	Turn                       // normalized as PrepareTurn says
	Metadata []byte            // the JSON of Turn.Metadata; nil when there is none
	Encoded  []PreparedMessage // Turn.Messages encoded, in order
	limit    int               // the size limit it was checked against; 0: not prepared
	counter  TokenCounter      // what counted the tokens
}

// Counter is the TokenCounter that counted the turn's tokens:
// DefaultTokenCounter unless a memory with WithTokenCounter prepared it. A
// backend counts with it what it must count for the save, such as rows a
// previous release stored without counts.
func (p PreparedTurn) Counter() TokenCounter {
	if p.counter == nil {
		return DefaultTokenCounter
	}
	return p.counter
}

// Prepared reports whether Prepare made p, so that a backend may store it
// without validating it again.
func (p PreparedTurn) Prepared() bool { return p.limit > 0 }

// Prepare is PrepareTurn returning a PreparedTurn, whose messages' tokens
// counter counts (nil: DefaultTokenCounter).
func Prepare(t Turn, now time.Time, maxMessageBytes int, counter TokenCounter) (PreparedTurn, error) {
	if counter == nil {
		counter = DefaultTokenCounter
	}
	return prepare(t, now, maxMessageBytes, counter)
}

func prepare(t Turn, now time.Time, limit int, counter TokenCounter) (PreparedTurn, error) {
	if limit <= 0 {
		limit = DefaultMaxMessageBytes
	}
	msgs := t.Messages
	if len(msgs) == 0 {
		if t.User == "" && t.Agent == "" {
			return PreparedTurn{}, fmt.Errorf("%w: no messages: user and agent are both empty", ErrInvalidTurn)
		}
		for _, f := range [...]struct{ name, s string }{{"user message", t.User}, {"agent message", t.Agent}} {
			if len(f.s) > limit {
				return PreparedTurn{}, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTurnTooLarge, f.name, len(f.s), limit)
			}
			if reason := badText(f.s); reason != "" {
				return PreparedTurn{}, fmt.Errorf("%w: %s %s", ErrInvalidTurn, f.name, reason)
			}
		}
		msgs = make([]Message, 0, 2)
		if t.User != "" {
			msgs = append(msgs, Message{Role: RoleUser, Content: t.User})
		}
		if t.Agent != "" {
			msgs = append(msgs, Message{Role: RoleAssistant, Content: t.Agent})
		}
	} else if t.User != "" || t.Agent != "" {
		u, a := t.User, t.Agent
		t.shorthand()
		if t.User != u || t.Agent != a {
			return PreparedTurn{}, fmt.Errorf("%w: set Messages or User and Agent, not both", ErrInvalidTurn)
		}
	}
	if len(msgs) > MaxTurnMessages {
		return PreparedTurn{}, fmt.Errorf("%w: %d messages, limit %d", ErrTurnTooLarge, len(msgs), MaxTurnMessages)
	}
	if t.Seq < 0 {
		return PreparedTurn{}, fmt.Errorf("%w: seq %d is negative", ErrInvalidTurn, t.Seq)
	}
	if len(t.ID) > MaxTurnIDBytes {
		return PreparedTurn{}, fmt.Errorf("%w: id is %d bytes, limit %d", ErrInvalidTurn, len(t.ID), MaxTurnIDBytes)
	}
	if reason := badText(t.ID); reason != "" {
		return PreparedTurn{}, fmt.Errorf("%w: id %s", ErrInvalidTurn, reason)
	}
	meta, data, err := prepareMetadata(t.Metadata, limit)
	if err != nil {
		return PreparedTurn{}, err
	}
	t.Metadata = meta

	if t.ID == "" {
		t.ID = NewTurnID()
	}
	if t.Timestamp.IsZero() {
		t.Timestamp = now
	}
	t.Timestamp = t.Timestamp.UTC().Truncate(time.Microsecond)
	if y := t.Timestamp.Year(); y < 1 || y > 9999 {
		// Outside these years SQLite's fixed-width text form breaks (a
		// stored turn would make its session unreadable) and PostgreSQL
		// fails with an untyped error.
		return PreparedTurn{}, fmt.Errorf("%w: timestamp %s is outside the years 1 to 9999 (UTC)", ErrInvalidTurn, t.Timestamp.Format(time.RFC3339Nano))
	}

	enc := make([]PreparedMessage, len(msgs))
	for i, m := range msgs {
		derived := m.ID == ""
		if derived {
			m.ID = DerivedMessageID(t.ID, i)
		}
		if enc[i], err = prepareMessage(m, i, limit, counter, derived); err != nil {
			return PreparedTurn{}, err
		}
	}
	if err := uniqueIDs(enc); err != nil {
		return PreparedTurn{}, err
	}
	t.Messages = make([]Message, len(enc))
	for i := range enc {
		t.Messages[i] = enc[i].Message
	}
	t.shorthand()
	return PreparedTurn{Turn: t, Metadata: data, Encoded: enc, limit: limit, counter: counter}, nil
}

// prepareMetadata validates metadata and returns its JSON round trip and
// the JSON; both nil for empty metadata.
func prepareMetadata(meta map[string]any, limit int) (map[string]any, []byte, error) {
	if len(meta) == 0 {
		return nil, nil, nil
	}
	// Every value but the last takes at least two bytes of JSON (itself
	// and a comma), so more than half the limit could never be stored.
	w := metadataWalk{values: limit/2 + 1, path: make([]uintptr, 0, 16)}
	if w.tooDeep(meta, MaxMetadataDepth) {
		switch {
		case w.cycle:
			return nil, nil, fmt.Errorf("%w: metadata contains a cycle", ErrInvalidTurn)
		case w.values < 0:
			return nil, nil, fmt.Errorf("%w: metadata holds more values than %d bytes of JSON can", ErrTurnTooLarge, limit)
		}
		return nil, nil, fmt.Errorf("%w: metadata nests deeper than %d levels", ErrInvalidTurn, MaxMetadataDepth)
	}
	data, err := json.Marshal(meta)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: metadata: %w", ErrInvalidTurn, err)
	}
	if len(data) > limit {
		return nil, nil, fmt.Errorf("%w: metadata is %d bytes of JSON, limit %d", ErrTurnTooLarge, len(data), limit)
	}
	if reason := badJSONText(data); reason != "" {
		return nil, nil, fmt.Errorf("%w: metadata %s", ErrInvalidTurn, reason)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, fmt.Errorf("%w: metadata: %w", ErrInvalidTurn, err)
	}
	return m, data, nil
}

// A metadataWalk bounds metadata before encoding/json sees it: how deep it
// nests (maps, slices, arrays, structs, pointers), and how many values it
// holds, counting a value each time it is reached, so that a map shared
// many times over cannot make encoding take exponential time, and finding
// cycles. It stops at the first bound it passes, so it costs
// at most what the bounds allow, and encoding/json never recurses far
// enough to exhaust the stack.
type metadataWalk struct {
	values int       // still allowed
	path   []uintptr // the maps, slices and pointers being walked, to find cycles
	cycle  bool      // the walk stopped at a cycle
}

// enter records a container on the path, reporting a cycle if it is on it
// already; leave takes it off.
func (w *metadataWalk) enter(p uintptr) bool {
	if p == 0 {
		return true
	}
	for _, q := range w.path {
		if q == p {
			w.cycle = true
			return false
		}
	}
	w.path = append(w.path, p)
	return true
}

func (w *metadataWalk) leave(p uintptr) {
	if p != 0 {
		w.path = w.path[:len(w.path)-1]
	}
}

// tooDeep reports whether v nests more than limit levels deep; w.values < 0
// afterwards means it holds too many values.
func (w *metadataWalk) tooDeep(v any, limit int) bool {
	switch m := v.(type) {
	case nil, string, bool, float64, int, int64, json.Number, json.RawMessage:
		w.values--
		return limit < 0 || w.values < 0
	case map[string]any: // the common case, without reflection
		w.values--
		p := reflect.ValueOf(m).Pointer()
		if limit < 0 || w.values < 0 || !w.enter(p) {
			return true
		}
		defer w.leave(p)
		for _, e := range m {
			if w.tooDeep(e, limit-1) {
				return true
			}
		}
		return false
	}
	return w.valueTooDeep(reflect.ValueOf(v), limit)
}

// valueTooDeep is tooDeep for any other type, by reflection.
func (w *metadataWalk) valueTooDeep(rv reflect.Value, limit int) bool {
	if w.values--; limit < 0 || w.values < 0 {
		return true
	}
	var p uintptr
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map:
		p = rv.Pointer()
	case reflect.Slice:
		if rv.Len() > 0 {
			p = rv.Pointer()
		}
	}
	if !w.enter(p) {
		return true
	}
	defer w.leave(p)
	switch rv.Kind() {
	case reflect.Interface: // a box, not a level
		w.values++
		return !rv.IsNil() && w.valueTooDeep(rv.Elem(), limit)
	case reflect.Pointer:
		return !rv.IsNil() && w.valueTooDeep(rv.Elem(), limit-1)
	case reflect.Map:
		if !nests(rv.Type().Elem()) {
			return false
		}
		for it := rv.MapRange(); it.Next(); {
			if w.valueTooDeep(it.Value(), limit-1) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		if !nests(rv.Type().Elem()) {
			return false
		}
		for i := range rv.Len() {
			if w.valueTooDeep(rv.Index(i), limit-1) {
				return true
			}
		}
	case reflect.Struct:
		for i := range rv.NumField() {
			if rv.Type().Field(i).IsExported() && w.valueTooDeep(rv.Field(i), limit-1) {
				return true
			}
		}
	}
	return false
}

// nests reports whether values of type t can hold further levels.
func nests(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice, reflect.Array, reflect.Struct:
		return true
	}
	return false
}

// ValidateText returns an error saying why s cannot be stored as text
// (it is not valid UTF-8, or holds a NUL byte), or nil. The error wraps no
// sentinel: the caller wraps it with its own.
func ValidateText(s string) error {
	if reason := badText(s); reason != "" {
		return errors.New(reason)
	}
	return nil
}

// badText says why s cannot be stored as text, or returns "".
func badText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL byte"
	}
	return ""
}

// badJSONText says why data, the output of json.Marshal, holds a key or
// string that a store would not keep as given, or returns "".
//
// Checking the decoded value is not enough: json.Marshal silently replaces
// invalid UTF-8 with the escape \ufffd (a valid U+FFFD is written as
// itself), and PostgreSQL jsonb rejects \u0000. So this scans the escapes:
// \u0000 is a NUL, \ufffd invalid UTF-8, an unpaired surrogate (only a
// json.Marshaler can write one) would decode to U+FFFD. A json.Marshaler that
// escapes a genuine U+FFFD is refused too; refusing beats storing something
// different. Backslashes occur only inside strings, so no parser is needed.
func badJSONText(data []byte) string {
	if !utf8.Valid(data) { // a json.Marshaler may emit raw invalid bytes
		return "is not valid UTF-8"
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		i++ // the escaped character; \\ and \" are skipped whole
		r, ok := unicodeEscape(data, i-1)
		if !ok {
			continue
		}
		i += 4
		switch {
		case r == 0:
			return "contains a NUL character"
		case r == utf8.RuneError:
			return "contains invalid UTF-8"
		case utf16.IsSurrogate(r):
			if lo, ok := unicodeEscape(data, i+1); ok && r < 0xdc00 && lo >= 0xdc00 && utf16.IsSurrogate(lo) {
				i += 6
				continue
			}
			return "contains an unpaired UTF-16 surrogate"
		}
	}
	return ""
}

// unicodeEscape decodes a \uXXXX escape starting at data[i].
func unicodeEscape(data []byte, i int) (rune, bool) {
	if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range data[i+2 : i+6] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
