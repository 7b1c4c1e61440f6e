package dataflow

import "fmt"

// WithDroppedIndex names an index the model no longer has: where the table
// still holds it (a database of an earlier release), the table's
// migration drops it, so that writes stop maintaining it.
func WithDroppedIndex(name string) ModelOption {
	return func(m *modelConfig) error {
		if name == "" {
			return fmt.Errorf("%w: a dropped index needs a name", ErrInvalidOption)
		}
		m.dropped = append(m.dropped, name)
		return nil
	}
}
