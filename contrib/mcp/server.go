package mcp

import (
	"errors"
	"fmt"
	"time"

	sdkmcp "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/turnkeep/turnkeep/memory"
)

// Bounds of the tools' answers.
const (
	// OutputBudget is the most tokens one tool answer holds, counted as the
	// memory counts them: message text by the memory's token counter (the
	// counts it stored with each message), the rest as EstimateTokens.
	OutputBudget = 4000
	// MaxSearchHits is the most hits search_memory returns; a larger limit
	// is clamped to it.
	MaxSearchHits = 20
	// MaxPageLimit is the most sessions or turns list_sessions and
	// get_history return in one page; a larger limit is clamped to it.
	MaxPageLimit = 50
	// DefaultCallTimeout bounds one tool call unless CallTimeout says
	// otherwise.
	DefaultCallTimeout = 30 * time.Second
)

// ErrInvalidScope is returned by NewServer for an empty or invalid
// Scope.User or an invalid Scope.Tenant. It wraps memory.ErrInvalidUser or
// memory.ErrInvalidTenant as well.
var ErrInvalidScope = errors.New("mcp: invalid scope")

// A Scope is whose memory a server serves: one owner's sessions in one
// tenant, and nothing else.
type Scope struct {
	Tenant string // "" for the default tenant
	User   string // the owner whose sessions the agent may see; required
}

// An Option configures NewServer.
type Option func(*config) error

type config struct {
	writes  bool
	timeout time.Duration
	name    string
	version string
}

// AllowWrites adds the save_note tool, which appends notes to the user's
// sessions (creating a session owned by the user when need be). Without it
// the server only reads.
func AllowWrites(on bool) Option {
	return func(c *config) error { c.writes = on; return nil }
}

// CallTimeout bounds each tool call (DefaultCallTimeout by default), on top
// of whatever deadline or cancellation the client sends. It must be
// positive.
func CallTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: call timeout %v must be positive", memory.ErrInvalidOption, d)
		}
		c.timeout = d
		return nil
	}
}

// Implementation sets the name and version the server reports in its
// initialize answer ("turnkeep" and "v0.1.0" by default).
func Implementation(name, version string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("%w: empty implementation name", memory.ErrInvalidOption)
		}
		c.name, c.version = name, version
		return nil
	}
}

// NewServer returns an MCP server whose tools read (and, with AllowWrites,
// write) the memory m, always within the given tenant and user. An empty or
// invalid User is an error.
//
// The tools are search_memory, list_sessions, get_history and, with
// AllowWrites, save_note. Every session ID, search and cursor they take is
// confined to scope: a session of another user or tenant, or one that has
// no owner, is "not found" exactly as a missing one is. Bad arguments are
// tool errors (a result with IsError set and a message a model can act
// on), never protocol errors. get_history shows the session's summary when
// m was made with memory.WithSummarizer.
//
// The server holds no state of its own beyond m: run it on any transport
// of the SDK, as often as wanted. m is not closed by it.
func NewServer(m *memory.PersistentBufferMemory, scope Scope, opts ...Option) (*sdkmcp.Server, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: memory must not be nil", memory.ErrInvalidOption)
	}
	if scope.User == "" {
		return nil, fmt.Errorf("%w: %w: a user is required", ErrInvalidScope, memory.ErrInvalidUser)
	}
	if err := memory.ValidateUser(scope.User); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidScope, err)
	}
	if err := memory.ValidateTenant(scope.Tenant); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidScope, err)
	}
	c := config{timeout: DefaultCallTimeout, name: "turnkeep", version: "v0.1.0"}
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: option %d is nil", memory.ErrInvalidOption, i)
		}
		if err := opt(&c); err != nil {
			return nil, err
		}
	}
	t := &tools{mem: m.ForTenant(scope.Tenant), user: scope.User, timeout: c.timeout}
	s := sdkmcp.NewServer(&sdkmcp.Implementation{Name: c.name, Version: c.version}, &sdkmcp.ServerOptions{
		Instructions: instructions(c.writes),
	})
	if err := t.register(s, c.writes); err != nil {
		return nil, err
	}
	return s, nil
}

func instructions(writes bool) string {
	s := "Long-term memory of this user's past conversations. Use search_memory to find what the user said before " +
		"(by words that must all occur), list_sessions to see their conversations, and get_history to read one, " +
		"page by page, older pages with before_turn."
	if writes {
		s += " save_note stores a note for later recall."
	}
	return s
}
