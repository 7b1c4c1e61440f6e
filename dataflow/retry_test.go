package dataflow_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/turnkeep/turnkeep/dataflow"
)

type sqlState string

func (s sqlState) Error() string    { return "pg error " + string(s) }
func (s sqlState) SQLState() string { return string(s) }

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("syntax error"), false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false}, // a net.Error, but the caller gave up
		{fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{driver.ErrBadConn, true},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("begin: %w", sqlState("57P01")), true}, // terminated by an administrator
		{sqlState("08006"), true},                          // connection failure
		{sqlState("23505"), false},                         // unique violation
		{errors.New("conn closed"), true},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, dataflow.Retryable(tt.err), "Retryable(%v)", tt.err)
	}
}
