package langchaingo

import (
	"fmt"

	"github.com/turnkeep/turnkeep/memory"
)

// An Option configures NewHistory.
type Option func(*config) error

type config struct {
	window []memory.LoadOption
}

// WithWindow makes Messages return the messages of the newest n turns
// only, instead of the memory's WithMaxTurns number; n < 1 is an error.
// Only those turns are read.
func WithWindow(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: window must be at least 1 turn, got %d", memory.ErrInvalidOption, n)
		}
		c.window = append(c.window, memory.LoadMaxTurns(n))
		return nil
	}
}

// WithTokenBudget makes Messages return only the newest whole turns whose
// tokens fit n, instead of the memory's own budget, and always the newest
// turn, even alone over n; 0 sets none, n < 0 is an error. A turn is never
// split, so a tool call is never returned without its result.
func WithTokenBudget(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: token budget must not be negative, got %d", memory.ErrInvalidOption, n)
		}
		c.window = append(c.window, memory.LoadTokenBudget(n))
		return nil
	}
}

// loadOptions returns the LoadContext options that opts ask for.
func loadOptions(opts []Option) ([]memory.LoadOption, error) {
	var c config
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: option %d is nil", memory.ErrInvalidOption, i)
		}
		if err := opt(&c); err != nil {
			return nil, err
		}
	}
	return c.window, nil
}
