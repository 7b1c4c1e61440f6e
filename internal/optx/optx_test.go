package optx_test

import (
	"errors"
	"testing"

	"github.com/turnkeep/turnkeep/internal/optx"
)

type config struct{ n int }

type option func(*config) error

func TestApply(t *testing.T) {
	set := func(n int) option {
		return func(c *config) error {
			if n < 0 {
				return optx.Errorf("n must not be negative, got %d", n)
			}
			c.n = n
			return nil
		}
	}
	for _, tc := range []struct {
		name string
		opts []option
		want int
		err  bool
	}{
		{"none", nil, 0, false},
		{"in order", []option{set(1), set(2)}, 2, false},
		{"nil", []option{set(1), nil}, 1, true},
		{"invalid", []option{set(-1), set(3)}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c config
			err := optx.Apply(&c, tc.opts)
			if tc.err != errors.Is(err, optx.ErrInvalidOption) {
				t.Fatalf("Apply: got %v; want an error wrapping ErrInvalidOption: %v", err, tc.err)
			}
			if c.n != tc.want {
				t.Errorf("got n = %d; want %d", c.n, tc.want)
			}
		})
	}
}
