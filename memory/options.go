package memory

import (
	"fmt"
	"time"
)

// Defaults and limits.
const (
	DefaultMaxTurns          = 10
	DefaultCacheTTL          = 5 * time.Minute
	DefaultMaxCachedSessions = 10_000
	DefaultMaxMessageBytes   = 1 << 20 // 1 MiB
	MaxSessionIDBytes        = 255
	MaxTurnIDBytes           = 128
	MaxMetadataDepth         = 100 // levels of nested objects and arrays in a turn's metadata
)

// An Option configures NewBufferMemory or NewPersistentBufferMemory.
// BufferMemory ignores the cache options.
type Option func(*config) error

type config struct {
	maxTurns          int
	cacheTTL          time.Duration
	maxCachedSessions int
	maxMessageBytes   int
	staleReads        time.Duration
}

func newConfig(opts []Option) (config, error) {
	c := config{
		maxTurns:          DefaultMaxTurns,
		cacheTTL:          DefaultCacheTTL,
		maxCachedSessions: DefaultMaxCachedSessions,
		maxMessageBytes:   DefaultMaxMessageBytes,
	}
	for i, opt := range opts {
		if opt == nil {
			return config{}, fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i)
		}
		if err := opt(&c); err != nil {
			return config{}, err
		}
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

// WithMaxMessageBytes bounds the size of each message and of the metadata
// JSON of a turn. The default is DefaultMaxMessageBytes; n < 1 is an error.
// A backend validates again with its own limit (backend.DataFlowBackend
// takes backend.WithMaxMessageBytes), so a larger limit must be set on both.
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
// with the backend; d < 0 is an error. It also lets a backend that is not a
// VersionedBackend be cached.
func WithStaleReads(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: stale reads must not be negative, got %v", ErrInvalidOption, d)
		}
		c.staleReads = d
		return nil
	}
}
