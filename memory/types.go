package memory

import (
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// The conversation model. Package driver defines it, for the backends
// that store it; these are the same types.
type (
	// A Turn is one exchange of a conversation: what the user said and
	// everything up to the answer. See driver.Turn.
	Turn = driver.Turn
	// A Message is one message of a turn. See driver.Message.
	Message = driver.Message
	// A Role says who wrote a message: RoleSystem, RoleUser,
	// RoleAssistant or RoleTool.
	Role = driver.Role
	// A ToolCall is an assistant's call of a tool.
	ToolCall = driver.ToolCall
	// A Part is a piece of a multimodal message.
	Part = driver.Part
	// A Window is the recent context of a session, as LoadContext
	// returns it. See driver.Window.
	Window = driver.Window
	// A TokenCounter counts the tokens of a message (WithTokenCounter).
	TokenCounter = driver.TokenCounter
	// TokenCounterFunc makes a function a TokenCounter.
	TokenCounterFunc = driver.TokenCounterFunc
	// A SessionInfo describes a stored session.
	SessionInfo = driver.SessionInfo
	// A SessionQuery selects a page of sessions for ListSessions.
	SessionQuery = driver.SessionQuery
	// A SessionPage is one page of ListSessions.
	SessionPage = driver.SessionPage
	// A HistoryQuery selects a page of a session's turns for History.
	HistoryQuery = driver.HistoryQuery
	// A HistoryPage is one page of History.
	HistoryPage = driver.HistoryPage
	// A SearchQuery selects messages for Search.
	SearchQuery = driver.SearchQuery
	// A SearchHit is a message Search found.
	SearchHit = driver.SearchHit
	// A DeleteReport says what DeleteUser or Expire removed.
	DeleteReport = driver.DeleteReport
	// A ForkPoint is where a fork left its parent (SessionInfo.ForkOf).
	ForkPoint = driver.ForkPoint
)

// The roles of a message.
const (
	RoleSystem    Role = driver.RoleSystem
	RoleUser      Role = driver.RoleUser
	RoleAssistant Role = driver.RoleAssistant
	RoleTool      Role = driver.RoleTool
)

// DefaultTokenCounter estimates tokens with EstimateTokens; see
// driver.DefaultTokenCounter.
var DefaultTokenCounter TokenCounter = driver.DefaultTokenCounter

// Defaults and limits. The limits of what is stored are package driver's,
// which every backend enforces.
const (
	DefaultMaxTurns          = 10
	DefaultCacheTTL          = 5 * time.Minute
	DefaultMaxCachedSessions = 10_000
	DefaultMaxMessageBytes   = driver.DefaultMaxMessageBytes // WithMaxMessageBytes
	DefaultListLimit         = driver.DefaultListLimit       // sessions or turns per page when a query gives none
	MaxListLimit             = driver.MaxListLimit           // the largest page

	MaxSessionIDBytes  = driver.MaxSessionIDBytes
	MaxTurnIDBytes     = driver.MaxTurnIDBytes
	MaxMessageIDBytes  = driver.MaxMessageIDBytes
	MaxTurnMessages    = driver.MaxTurnMessages // messages in one turn, and in one AppendMessages call
	MaxNameBytes       = driver.MaxNameBytes    // a Message.Name, a ToolCall's ID and Name, a ToolCallID, a Part's Type and MIMEType
	MaxMetadataDepth   = driver.MaxMetadataDepth
	MaxTenantBytes     = driver.MaxTenantBytes
	MaxUserBytes       = driver.MaxUserBytes
	MaxTitleBytes      = driver.MaxTitleBytes
	MaxSearchTerms     = driver.MaxSearchTerms // distinct terms of a SearchQuery's Text
	MaxSearchBytes     = driver.MaxSearchBytes // bytes of a SearchQuery's Text
	MaxSessionKeyBytes = driver.MaxSessionKeyBytes

	MessageOverheadTokens = driver.MessageOverheadTokens // DefaultTokenCounter: per message
	ImagePartTokens       = driver.ImagePartTokens       // DefaultTokenCounter: per non-text part
)

// EstimateTokens estimates the tokens of s as DefaultTokenCounter does; see
// driver.EstimateTokens.
func EstimateTokens(s string) int { return driver.EstimateTokens(s) }

// NewTurnID returns 128 random bits from crypto/rand as 32 lowercase hex
// characters: the ID SaveTurn gives a turn without one.
func NewTurnID() string { return driver.NewTurnID() }

// ValidateSessionID returns an error wrapping ErrInvalidSessionID for a
// session ID every method refuses: empty, longer than MaxSessionIDBytes,
// not valid UTF-8, or holding a NUL byte or U+001F.
func ValidateSessionID(id string) error { return driver.ValidateSessionID(id) }

// ValidateTenant returns an error wrapping ErrInvalidTenant for a tenant
// name ForTenant refuses: longer than MaxTenantBytes, not valid UTF-8, or
// holding a control character. "" is the default tenant.
func ValidateTenant(tenant string) error { return driver.ValidateTenant(tenant) }

// ValidateUser returns an error wrapping ErrInvalidUser for an owner name
// longer than MaxUserBytes, not valid UTF-8, or holding a control
// character.
func ValidateUser(user string) error { return driver.ValidateUser(user) }
