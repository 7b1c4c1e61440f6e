// Package optx is the one rule every turnkeep package's functional options
// follow: an Option is a func that applies itself and returns an error for
// an invalid value; a nil Option, an option given a nil or out-of-range
// value, and a nil required argument of a constructor all make the
// constructor fail with an error wrapping ErrInvalidOption, the one error
// value of a bad option, which turnkeep, memory, driver, dataflow and
// migrate each export under that name (backend's options return
// driver's). Nothing is ignored and nothing falls back to a default
// silently.
package optx

import (
	"errors"
	"fmt"
)

// ErrInvalidOption is the error value of a bad option in every package.
var ErrInvalidOption = errors.New("turnkeep: invalid option")

// Apply applies opts to target in order. A nil option is ErrInvalidOption
// naming its position; the first option's error stops it.
func Apply[T any, O ~func(T) error](target T, opts []O) error {
	for i, opt := range opts {
		if opt == nil {
			return fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i)
		}
		if err := opt(target); err != nil {
			return err
		}
	}
	return nil
}

// Errorf returns an error wrapping ErrInvalidOption: "invalid option: "
// and the formatted reason.
func Errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}
