package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHello runs the README's first program twice in an empty directory:
// it makes chat.db there, and the second run finds the first run's turn.
func TestHello(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	assert.Equal(t, "1 Hello Hi there\n", runMain(t))
	assert.Equal(t, "2 Hello Hi there\n", runMain(t))
	_, err := os.Stat(filepath.Join(dir, "chat.db"))
	assert.NoError(t, err, "chat.db is in the working directory")
}

// runMain runs main and returns what it printed.
func runMain(t *testing.T) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stdout := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = stdout }()
	main()
	require.NoError(t, w.Close())
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(out)
}
