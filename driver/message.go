package driver

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// A Role says who a message is from.
//
// Only the four roles below are stored; any other is refused with
// ErrInvalidTurn. Model providers reject roles they do not know, so a typo
// caught at save time beats a conversation every later request fails on.
// An application's own kinds of message belong in Message.Metadata or
// Message.Name.
type Role string

// The roles a message may have.
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool"
)

// valid reports whether r is one of the four roles.
func (r Role) valid() bool {
	switch r {
	case RoleSystem, RoleUser, RoleAssistant, RoleTool:
		return true
	}
	return false
}

// A ToolCall is the assistant asking for a tool to run.
type ToolCall struct {
	ID        string // the call's ID, answered by a RoleTool message's ToolCallID
	Name      string
	Arguments string // JSON text, stored verbatim; "" when the call has none
}

// A Part is one piece of a multi-part message.
type Part struct {
	Type     string // "text", "image", "audio", "file", or an application's own
	Text     string
	URL      string
	MIMEType string
	Data     []byte // inline bytes, within the size limit
}

// A Message is one message of a conversation, as a model provider takes it.
//
// Content, Parts and ToolCalls may be combined; a message needs at least
// one of them. ToolCalls are only for RoleAssistant and ToolCallID only for
// RoleTool, which requires it.
type Message struct {
	ID         string // idempotency key within the session; generated when empty
	Role       Role
	Content    string
	Parts      []Part
	Name       string
	ToolCalls  []ToolCall // RoleAssistant
	ToolCallID string     // RoleTool
	Metadata   map[string]any
	Tokens     int // set by the memory when it stores or loads the message
}

// Limits of the conversation model.
const (
	MaxMessageIDBytes = 128  // a Message.ID
	MaxTurnMessages   = 1024 // messages in one turn, and in one AppendMessages call
	MaxNameBytes      = 256  // a Message.Name, a ToolCall's ID and Name, a ToolCallID, a Part's Type and MIMEType
)

// A PreparedMessage is a message validated, normalized and encoded by
// Prepare or PrepareMessages: the form a Backend stores. Its Message has
// an ID and its Tokens counted.
type PreparedMessage struct {
	Message
	ToolCallsJSON []byte // the JSON of ToolCalls; nil when there are none
	PartsJSON     []byte // the JSON of Parts; nil when there are none
	MetadataJSON  []byte // the JSON of Metadata; nil when there is none
}

// storedToolCall and storedPart are the JSON forms of ToolCall and Part:
// short keys, and the arguments kept as a string so that they come back
// byte for byte.
type storedToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments,omitempty"`
}

type storedPart struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	URL      string `json:"url,omitempty"`
	MIMEType string `json:"mime_type,omitempty"`
	Data     []byte `json:"data,omitempty"` // base64
}

// DecodeMessage fills m's ToolCalls, Parts and Metadata from their stored
// JSON (as PreparedMessage holds it); nil or empty JSON leaves a field nil.
func DecodeMessage(m *Message, toolCalls, parts, metadata []byte) error {
	m.ToolCalls, m.Parts, m.Metadata = nil, nil, nil
	if len(toolCalls) > 0 {
		var calls []storedToolCall
		if err := json.Unmarshal(toolCalls, &calls); err != nil {
			return fmt.Errorf("decode tool calls of message %s: %w", m.ID, err)
		}
		m.ToolCalls = make([]ToolCall, len(calls))
		for i, c := range calls {
			m.ToolCalls[i] = ToolCall(c)
		}
	}
	if len(parts) > 0 {
		var ps []storedPart
		if err := json.Unmarshal(parts, &ps); err != nil {
			return fmt.Errorf("decode parts of message %s: %w", m.ID, err)
		}
		m.Parts = make([]Part, len(ps))
		for i, p := range ps {
			m.Parts[i] = Part(p)
		}
	}
	if len(metadata) > 0 {
		if err := json.Unmarshal(metadata, &m.Metadata); err != nil {
			return fmt.Errorf("decode metadata of message %s: %w", m.ID, err)
		}
	}
	return nil
}

// DerivedMessageID is the ID a message saved in a turn without one gets:
// the turn's ID and the message's position in it. Messages stored before
// messages had IDs read back with these IDs too.
func DerivedMessageID(turnID string, pos int) string {
	return turnID + "/" + strconv.Itoa(pos)
}

// prepareMessage validates m (whose role the caller has checked is allowed
// where it stands), counts its tokens and encodes it.
//
// A derived ID (DerivedMessageID of a turn ID) may exceed
// MaxMessageIDBytes by its suffix.
func prepareMessage(m Message, i int, limit int, counter TokenCounter, derived bool) (PreparedMessage, error) {
	fail := func(kind error, format string, args ...any) (PreparedMessage, error) {
		return PreparedMessage{}, fmt.Errorf("%w: message %d: "+format, append([]any{kind, i}, args...)...)
	}
	if !m.Role.valid() {
		if m.Role == "" {
			return fail(ErrInvalidTurn, "no role")
		}
		return fail(ErrInvalidTurn, "unknown role %q", m.Role)
	}
	maxID := MaxMessageIDBytes
	if derived {
		maxID = MaxTurnIDBytes + 12 // "/" and a position
	}
	for _, f := range [...]field{
		{"content", m.Content, limit, true},
		{"id", m.ID, maxID, false},
		{"name", m.Name, MaxNameBytes, false},
		{"tool call id", m.ToolCallID, MaxNameBytes, false},
	} {
		if len(f.s) > f.max {
			return fail(f.tooLong(), "%s is %d bytes, limit %d", f.name, len(f.s), f.max)
		}
		if reason := badText(f.s); reason != "" {
			return fail(ErrInvalidTurn, "%s %s", f.name, reason)
		}
	}
	switch {
	case m.Role == RoleTool && m.ToolCallID == "":
		return fail(ErrInvalidTurn, "a tool message needs the ToolCallID it answers")
	case m.Role != RoleTool && m.ToolCallID != "":
		return fail(ErrInvalidTurn, "only a tool message has a ToolCallID")
	case m.Role != RoleAssistant && len(m.ToolCalls) > 0:
		return fail(ErrInvalidTurn, "only an assistant message has tool calls")
	case m.Content == "" && len(m.Parts) == 0 && len(m.ToolCalls) == 0:
		return fail(ErrInvalidTurn, "no content, parts or tool calls")
	}

	p := PreparedMessage{Message: m}
	p.Tokens = 0
	if len(m.ToolCalls) > 0 {
		calls := make([]storedToolCall, len(m.ToolCalls))
		for j, c := range m.ToolCalls {
			for _, f := range [...]struct{ name, s string }{{"id", c.ID}, {"name", c.Name}} {
				if f.s == "" {
					return fail(ErrInvalidTurn, "tool call %d has no %s", j, f.name)
				}
				if len(f.s) > MaxNameBytes {
					return fail(ErrInvalidTurn, "tool call %d %s is %d bytes, limit %d", j, f.name, len(f.s), MaxNameBytes)
				}
				if reason := badText(f.s); reason != "" {
					return fail(ErrInvalidTurn, "tool call %d %s %s", j, f.name, reason)
				}
			}
			if len(c.Arguments) > limit {
				return fail(ErrTurnTooLarge, "tool call %d arguments are %d bytes, limit %d", j, len(c.Arguments), limit)
			}
			if c.Arguments != "" {
				if reason := badText(c.Arguments); reason != "" {
					return fail(ErrInvalidTurn, "tool call %d arguments %s", j, reason)
				}
				if !json.Valid([]byte(c.Arguments)) {
					return fail(ErrInvalidTurn, "tool call %d arguments are not valid JSON", j)
				}
			}
			calls[j] = storedToolCall(c)
		}
		data, err := json.Marshal(calls)
		if err != nil {
			return fail(ErrInvalidTurn, "tool calls: %v", err)
		}
		if len(data) > limit {
			return fail(ErrTurnTooLarge, "tool calls are %d bytes of JSON, limit %d", len(data), limit)
		}
		p.ToolCallsJSON = data
		p.ToolCalls = append([]ToolCall(nil), m.ToolCalls...)
	} else {
		p.ToolCalls = nil
	}
	if len(m.Parts) > 0 {
		parts := make([]storedPart, len(m.Parts))
		for j, pt := range m.Parts {
			if pt.Type == "" {
				return fail(ErrInvalidTurn, "part %d has no type", j)
			}
			for _, f := range [...]field{{"type", pt.Type, MaxNameBytes, false}, {"mime type", pt.MIMEType, MaxNameBytes, false},
				{"text", pt.Text, limit, true}, {"url", pt.URL, limit, true}} {
				if len(f.s) > f.max {
					return fail(f.tooLong(), "part %d %s is %d bytes, limit %d", j, f.name, len(f.s), f.max)
				}
				if reason := badText(f.s); reason != "" {
					return fail(ErrInvalidTurn, "part %d %s %s", j, f.name, reason)
				}
			}
			if len(pt.Data) > limit {
				return fail(ErrTurnTooLarge, "part %d data is %d bytes, limit %d", j, len(pt.Data), limit)
			}
			parts[j] = storedPart(pt)
			if len(pt.Data) == 0 {
				parts[j].Data = nil
			}
		}
		data, err := json.Marshal(parts)
		if err != nil {
			return fail(ErrInvalidTurn, "parts: %v", err)
		}
		if len(data) > limit {
			return fail(ErrTurnTooLarge, "parts are %d bytes of JSON, limit %d", len(data), limit)
		}
		p.PartsJSON = data
		p.Parts = make([]Part, len(parts))
		for j, sp := range parts {
			p.Parts[j] = Part(sp)
			if sp.Data != nil {
				p.Parts[j].Data = append([]byte(nil), sp.Data...)
			}
		}
	} else {
		p.Parts = nil
	}
	meta, data, err := prepareMetadata(m.Metadata, limit)
	if err != nil {
		return PreparedMessage{}, fmt.Errorf("%w (message %d)", err, i)
	}
	p.Metadata, p.MetadataJSON = meta, data
	if counter != nil {
		n := counter.CountTokens(p.Message)
		if n < 0 {
			n = 0
		}
		p.Tokens = n
	}
	return p, nil
}

// A field is a text of a message with its bound: the size limit (sized),
// or a fixed bound of IDs and names.
type field struct {
	name, s string
	max     int
	sized   bool
}

// tooLong is the error of a field over its bound.
func (f field) tooLong() error {
	if f.sized {
		return ErrTurnTooLarge
	}
	return ErrInvalidTurn
}

// PrepareMessages validates, normalizes and encodes messages to append to
// a stored turn, as AppendMessages does: an empty ID becomes NewTurnID(),
// and Tokens are counted with counter (DefaultTokenCounter when nil).
// Errors wrap ErrInvalidTurn or ErrTurnTooLarge; IDs repeated within msgs
// are ErrInvalidTurn.
func PrepareMessages(msgs []Message, maxMessageBytes int, counter TokenCounter) ([]PreparedMessage, error) {
	if maxMessageBytes <= 0 {
		maxMessageBytes = DefaultMaxMessageBytes
	}
	if counter == nil {
		counter = DefaultTokenCounter
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%w: no messages", ErrInvalidTurn)
	}
	if len(msgs) > MaxTurnMessages {
		return nil, fmt.Errorf("%w: %d messages, limit %d", ErrTurnTooLarge, len(msgs), MaxTurnMessages)
	}
	out := make([]PreparedMessage, len(msgs))
	for i, m := range msgs {
		if m.ID == "" {
			m.ID = NewTurnID()
		}
		p, err := prepareMessage(m, i, maxMessageBytes, counter, false)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	if err := uniqueIDs(out); err != nil {
		return nil, err
	}
	return out, nil
}

// uniqueIDs refuses a message ID given twice.
func uniqueIDs(msgs []PreparedMessage) error {
	if len(msgs) < 2 {
		return nil
	}
	seen := make(map[string]struct{}, len(msgs))
	for i := range msgs {
		if _, dup := seen[msgs[i].ID]; dup {
			return fmt.Errorf("%w: message id %q given twice", ErrInvalidTurn, msgs[i].ID)
		}
		seen[msgs[i].ID] = struct{}{}
	}
	return nil
}

// FillShorthand sets t.User and t.Agent from t.Messages, as a loaded turn
// has them: the content of its first user message and of its last
// assistant message. Backends call it on the turns they read.
func FillShorthand(t *Turn) { t.shorthand() }

// shorthand sets the turn's User and Agent from its messages: the content
// of its first user message and of its last assistant message.
func (t *Turn) shorthand() {
	t.User, t.Agent = "", ""
	for i := range t.Messages {
		if t.Messages[i].Role == RoleUser {
			t.User = t.Messages[i].Content
			break
		}
	}
	for i := len(t.Messages) - 1; i >= 0; i-- {
		if t.Messages[i].Role == RoleAssistant {
			t.Agent = t.Messages[i].Content
			break
		}
	}
}

// Tokens is the sum of the tokens of the turn's messages.
func (t Turn) Tokens() int {
	n := 0
	for i := range t.Messages {
		n += t.Messages[i].Tokens
	}
	return n
}

// Messages returns the window's messages in order, for a model request.
func (w Window) Messages() []Message {
	n := 0
	for i := range w.Turns {
		n += len(w.Turns[i].Messages)
	}
	out := make([]Message, 0, n)
	for i := range w.Turns {
		out = append(out, w.Turns[i].Messages...)
	}
	return out
}
