package langchaingo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tmc/langchaingo/llms"
	"github.com/tmc/langchaingo/schema"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

var _ schema.ChatMessageHistory = (*History)(nil)

// History is a langchaingo schema.ChatMessageHistory that keeps one
// session of a turnkeep memory. It is safe for concurrent use; the zero
// value is not usable (its methods return an error wrapping
// memory.ErrClosed): make one with NewHistory.
type History struct {
	mem       memory.Memory
	sessionID string
	window    []memory.LoadOption // the window Messages returns; none: the memory's own

	mu sync.Mutex // serializes the writes of this History, so each finds the turn the previous one left newest
}

// NewHistory returns the history of session sessionID in mem, which is
// usually a *memory.PersistentBufferMemory. A nil mem or an invalid option
// is an error wrapping memory.ErrInvalidOption; an invalid session ID, one
// wrapping memory.ErrInvalidSessionID.
func NewHistory(mem memory.Memory, sessionID string, opts ...Option) (*History, error) {
	if mem == nil {
		return nil, fmt.Errorf("%w: memory must not be nil", memory.ErrInvalidOption)
	}
	if err := memory.ValidateSessionID(sessionID); err != nil {
		return nil, err
	}
	window, err := loadOptions(opts)
	if err != nil {
		return nil, err
	}
	return &History{mem: mem, sessionID: sessionID, window: window}, nil
}

func (h *History) check() error {
	if h == nil || h.mem == nil {
		return fmt.Errorf("%w: History not made by NewHistory", memory.ErrClosed)
	}
	return nil
}

// AddMessage stores message. A user message (a HumanChatMessage, or a
// GenericChatMessage stored as one) starts a new turn; any other message
// is appended to the session's newest turn, or starts the first one. A
// user message following only system messages joins their turn. See the
// package doc for how each type is stored.
func (h *History) AddMessage(ctx context.Context, message llms.ChatMessage) error {
	if err := h.check(); err != nil {
		return err
	}
	m, err := toMessage(message)
	if err != nil {
		return fmt.Errorf("langchaingo: add message: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.add(ctx, m); err != nil {
		return fmt.Errorf("langchaingo: add message: %w", err)
	}
	return nil
}

// add stores m in the newest turn, or in a new one, as startsTurn says.
// Only the newest turn is read, whatever the session's length.
func (h *History) add(ctx context.Context, m memory.Message) error {
	w, err := h.mem.LoadContext(ctx, h.sessionID, memory.LoadMaxTurns(1), memory.LoadTokenBudget(0))
	if err != nil {
		return err
	}
	var cur *memory.Turn
	if len(w.Turns) > 0 {
		cur = &w.Turns[len(w.Turns)-1]
	}
	if cur != nil && !startsTurn(cur.Messages, m) {
		err := h.mem.AppendMessages(ctx, h.sessionID, cur.ID, m)
		if !errors.Is(err, memory.ErrTurnNotFound) {
			return err
		}
		// The session was cleared since the read: m starts it again.
	}
	return h.mem.SaveTurn(ctx, h.sessionID, memory.Turn{Messages: []memory.Message{m}})
}

// startsTurn reports whether m, following the messages of the newest turn
// (none: the session is empty), starts a new turn. A user message starts
// one, unless that turn holds only system messages: a system prompt
// belongs to the exchange it opens. Every other message continues the
// exchange, so a tool call and its result share a turn.
func startsTurn(newest []memory.Message, m memory.Message) bool {
	if len(newest) == 0 {
		return true
	}
	if m.Role != memory.RoleUser {
		return false
	}
	for i := range newest {
		if newest[i].Role != memory.RoleSystem {
			return true
		}
	}
	return false
}

// AddUserMessage stores a HumanChatMessage, which starts a new turn.
func (h *History) AddUserMessage(ctx context.Context, text string) error {
	return h.AddMessage(ctx, llms.HumanChatMessage{Content: text})
}

// AddAIMessage stores an AIChatMessage in the newest turn.
func (h *History) AddAIMessage(ctx context.Context, text string) error {
	return h.AddMessage(ctx, llms.AIChatMessage{Content: text})
}

// Messages returns the messages of the session's window, oldest first:
// its newest whole turns within the limits of WithWindow and
// WithTokenBudget, or else the memory's own (WithMaxTurns,
// WithTokenBudget of package memory). Only those turns are read.
func (h *History) Messages(ctx context.Context) ([]llms.ChatMessage, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	w, err := h.mem.LoadContext(ctx, h.sessionID, h.window...)
	if err != nil {
		return nil, fmt.Errorf("langchaingo: messages: %w", err)
	}
	out := make([]llms.ChatMessage, 0, len(w.Turns)*2)
	for i := range w.Turns {
		for _, m := range w.Turns[i].Messages {
			out = append(out, fromMessage(m))
		}
	}
	return out, nil
}

// Clear removes every turn of the session.
func (h *History) Clear(ctx context.Context) error {
	if err := h.check(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.mem.Clear(ctx, h.sessionID); err != nil {
		return fmt.Errorf("langchaingo: clear: %w", err)
	}
	return nil
}

// SetMessages replaces the whole session (not only the window) with
// messages, grouped into turns as AddMessage would group them.
//
// Every message is converted and every turn validated before anything
// changes, so input turnkeep would refuse leaves the session as it was.
// When the memory has ReplaceSession (both turnkeep memories do), the
// replacement is one atomic write. Otherwise the session is cleared and
// the turns saved one by one, each atomically; calling SetMessages again
// with the same messages then completes an interrupted replacement. The
// package doc says more.
func (h *History) SetMessages(ctx context.Context, messages []llms.ChatMessage) error {
	if err := h.check(); err != nil {
		return err
	}
	turns, err := group(messages)
	if err != nil {
		return fmt.Errorf("langchaingo: set messages: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.mem.(replacer); ok {
		if err := r.ReplaceSession(ctx, h.sessionID, turns...); err != nil {
			return fmt.Errorf("langchaingo: set messages: %w", err)
		}
		return nil
	}
	if err := h.mem.Clear(ctx, h.sessionID); err != nil {
		return fmt.Errorf("langchaingo: set messages: %w", err)
	}
	for i, t := range turns {
		if err := h.mem.SaveTurn(ctx, h.sessionID, t); err != nil {
			return fmt.Errorf("langchaingo: set messages: turn %d of %d: %w", i+1, len(turns), err)
		}
	}
	return nil
}

// replacer is a memory that replaces a session's history atomically, as
// memory.PersistentBufferMemory and memory.BufferMemory do.
type replacer interface {
	ReplaceSession(ctx context.Context, sessionID string, turns ...memory.Turn) error
}

// group converts messages and splits them into turns by startsTurn, each
// validated as a memory would validate it.
func group(messages []llms.ChatMessage) ([]memory.Turn, error) {
	var turns []memory.Turn
	for i, cm := range messages {
		m, err := toMessage(cm)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		if n := len(turns); n == 0 || startsTurn(turns[n-1].Messages, m) {
			turns = append(turns, memory.Turn{})
		}
		t := &turns[len(turns)-1]
		t.Messages = append(t.Messages, m)
	}
	now := time.Now()
	for i := range turns {
		if _, err := driver.Prepare(turns[i], now, 0, nil); err != nil {
			return nil, fmt.Errorf("turn %d of %d: %w", i+1, len(turns), err)
		}
	}
	return turns, nil
}
