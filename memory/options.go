package memory

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/turnkeep/turnkeep/internal/optx"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// An Option configures NewBufferMemory or NewPersistentBufferMemory.
// BufferMemory ignores the cache, logging and telemetry options. Options
// follow one rule in every turnkeep package: a nil Option, or one given a
// nil or out-of-range value, is an error wrapping ErrInvalidOption.
type Option func(*config) error

type config struct {
	maxTurns          int
	cacheTTL          time.Duration
	maxCachedSessions int
	maxMessageBytes   int
	staleReads        time.Duration
	tokenBudget       int
	counter           TokenCounter
	summarizer        Summarizer // WithSummarizer
	summaryTokens     int

	logger         *slog.Logger // nil: discard
	logContent     bool
	slowThreshold  time.Duration
	tracerProvider trace.TracerProvider // nil: otel's global one
	meterProvider  metric.MeterProvider // nil: otel's global one
}

func newConfig(opts []Option) (config, error) {
	c := config{
		maxTurns:          DefaultMaxTurns,
		cacheTTL:          DefaultCacheTTL,
		maxCachedSessions: DefaultMaxCachedSessions,
		maxMessageBytes:   DefaultMaxMessageBytes,
		counter:           DefaultTokenCounter,
	}
	if err := optx.Apply(&c, opts); err != nil {
		return config{}, err
	}
	return c, nil
}

// WithMaxTurns sets how many of the newest turns LoadContext returns.
// The default is DefaultMaxTurns; n < 1 is an error.
func WithMaxTurns(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max turns must be at least 1, got %d", ErrInvalidOption, n)
		}
		c.maxTurns = n
		return nil
	}
}

// WithCacheTTL sets how long a cached window is kept after the backend last
// confirmed it; a window the backend keeps confirming stays cached. The
// default is DefaultCacheTTL; 0 disables the cache; d < 0 is an error.
func WithCacheTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: cache ttl must not be negative, got %v", ErrInvalidOption, d)
		}
		c.cacheTTL = d
		return nil
	}
}

// WithMaxCachedSessions bounds how many session windows are cached; the
// least recently used is evicted first. The default is
// DefaultMaxCachedSessions; n < 1 is an error.
func WithMaxCachedSessions(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max cached sessions must be at least 1, got %d", ErrInvalidOption, n)
		}
		c.maxCachedSessions = n
		return nil
	}
}

// WithMaxMessageBytes bounds the size of each message's content, tool
// calls, parts and metadata, and of a turn's metadata JSON. The default is
// DefaultMaxMessageBytes; n < 1 is an error. It is the one limit of the
// turns a memory saves: its backend stores them as they were validated.
func WithMaxMessageBytes(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max message bytes must be at least 1, got %d", ErrInvalidOption, n)
		}
		c.maxMessageBytes = n
		return nil
	}
}

// WithStaleReads lets LoadContext answer from a cached window without asking
// the backend, for up to d after the backend last confirmed it (by a load or
// a save through this memory). Writes by other processes, or by other
// memories over the same store, can then go unseen for up to d: it trades
// read-your-writes across servers for loads with no round trip. This
// process's own saves and clears are always seen, and a save still never
// appends onto a stale window. The default, 0, confirms every cached window
// with the backend; d < 0 is an error. It also lets the windows of a
// backend that does not version sessions (driver.UnknownVersion) be cached.
func WithStaleReads(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: stale reads must not be negative, got %v", ErrInvalidOption, d)
		}
		c.staleReads = d
		return nil
	}
}

// WithTokenBudget makes a window hold only the newest whole turns whose
// tokens fit n (and at most MaxTurns turns): a turn that would not fit is
// left out with every older one, so a window never splits a turn, nor a
// tool call from its result. A window always holds the session's newest
// turn, even when it alone is over n (so a model always gets the user's
// last message); Window.Tokens then exceeds n. The default, 0, sets no
// budget; n < 0 is an error. Tokens are counted once per message, when it
// is stored, by the WithTokenCounter counter.
func WithTokenBudget(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: token budget must not be negative, got %d", ErrInvalidOption, n)
		}
		c.tokenBudget = n
		return nil
	}
}

// WithTokenCounter sets how the tokens of a message are counted; the
// default is DefaultTokenCounter. A nil c is an error.
func WithTokenCounter(c TokenCounter) Option {
	return func(cfg *config) error {
		if c == nil {
			return fmt.Errorf("%w: token counter must not be nil", ErrInvalidOption)
		}
		cfg.counter = c
		return nil
	}
}

// WithLogger makes the memory log to l: at Warn, operations slower than
// WithSlowThreshold; at Info, a cached window dropped after a failed
// write (with the error); at Debug, each write (session, turn, message
// count) and each cached window found changed by another writer. Session
// IDs and tenants are logged; message content and metadata only under
// WithLogContent. The default discards everything; a nil l is an error.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		c.logger = l
		if l.Handler() == slog.DiscardHandler {
			c.logger = nil
		}
		return nil
	}
}

// WithLogContent(true) lets the Debug log lines of writes (see WithLogger)
// carry the messages' roles, content and metadata, and the turn's
// metadata. Off by default: conversations often hold personal data.
func WithLogContent(on bool) Option {
	return func(c *config) error { c.logContent = on; return nil }
}

// WithSlowThreshold makes every operation that takes d or longer log a
// Warn line (WithLogger) naming the operation, its duration and its
// session. The default, 0, logs none; d < 0 is an error.
func WithSlowThreshold(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: slow threshold must not be negative, got %v", ErrInvalidOption, d)
		}
		c.slowThreshold = d
		return nil
	}
}

// WithTracerProvider makes the memory record a span of each operation
// (see SpanPrefix) with tp. The default is otel's global provider when the
// memory is made: set it before, with otel.SetTracerProvider. While that
// is still otel's default, or tp is a no-op, no span is started and
// operations cost nothing more. A nil tp is an error.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return fmt.Errorf("%w: nil tracer provider", ErrInvalidOption)
		}
		c.tracerProvider = tp
		return nil
	}
}

// WithMeterProvider makes the memory record its metrics (see
// MetricOperationDuration and the cache counters) with mp. The default is
// otel's global provider when the memory is made, as for
// WithTracerProvider. A nil mp is an error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return fmt.Errorf("%w: nil meter provider", ErrInvalidOption)
		}
		c.meterProvider = mp
		return nil
	}
}

// A LoadOption overrides a limit of the window for one LoadContext call.
type LoadOption func(*limits) error

// limits are the two limits of a window.
type limits struct {
	maxTurns    int
	tokenBudget int
}

// LoadMaxTurns makes one LoadContext return at most the newest n turns
// instead of the WithMaxTurns number; n < 1 is an error.
func LoadMaxTurns(n int) LoadOption {
	return func(l *limits) error {
		if n < 1 {
			return fmt.Errorf("%w: max turns must be at least 1, got %d", ErrInvalidOption, n)
		}
		l.maxTurns = n
		return nil
	}
}

// LoadTokenBudget makes one LoadContext use the token budget n instead of
// the WithTokenBudget one, by the same rule (the newest turn is always
// there, even alone over n); 0 sets none, n < 0 is an error.
func LoadTokenBudget(n int) LoadOption {
	return func(l *limits) error {
		if n < 0 {
			return fmt.Errorf("%w: token budget must not be negative, got %d", ErrInvalidOption, n)
		}
		l.tokenBudget = n
		return nil
	}
}

// apply returns l changed by opts.
func (l limits) apply(opts []LoadOption) (limits, error) {
	if err := optx.Apply(&l, opts); err != nil {
		return limits{}, fmt.Errorf("load %w", err)
	}
	return l, nil
}

// within reports whether a window of l is contained in a window of o:
// then it can be cut from it.
func (l limits) within(o limits) bool {
	return l.maxTurns <= o.maxTurns && (o.tokenBudget == 0 || l.tokenBudget > 0 && l.tokenBudget <= o.tokenBudget)
}
