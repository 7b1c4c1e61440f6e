package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer safe for the program and the test at once.
type lockedBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

var urlRE = regexp.MustCompile(`http://127\.0\.0\.1:\d+`)

// TestRun runs the program in-process: it prints its URL, serves the page
// and the API, and exits cleanly when its context ends.
func TestRun(t *testing.T) {
	db := "sqlite:///" + filepath.Join(t.TempDir(), "server.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-db", db, "-addr", "127.0.0.1:0"}, &stdout, &stderr, func(string) string { return "" })
	}()

	var base string
	for deadline := time.Now().Add(30 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		base = urlRE.FindString(stdout.String())
	}
	require.NotEmpty(t, base, "no URL printed; stdout %q, stderr %q", stdout.String(), stderr.String())
	assert.Contains(t, stdout.String(), "agent: offline")

	resp, err := http.Get(base + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(page), "turnkeep chat")

	req, _ := http.NewRequest("POST", base+"/api/sessions", strings.NewReader(`{"title":"t"}`))
	req.Header.Set(UserHeader, "ada")
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)

	cancel()
	select {
	case c := <-code:
		assert.Equal(t, exitOK, c, "stderr: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestRunBadArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want int
		err  string
	}{
		{args: []string{"-nope"}, want: exitUsage, err: "flag provided but not defined"},
		{args: []string{"extra"}, want: exitUsage, err: `unexpected argument "extra"`},
		{args: []string{"-h"}, want: exitOK},
		{env: map[string]string{EnvLLMURL: "localhost:11434"}, want: exitUsage, err: EnvLLMURL},
		{args: []string{"-db", "mysql://x"}, want: exitFailure, err: "server:"},
		{args: []string{"-db", "sqlite:///" + filepath.Join(t.TempDir(), "x.db"), "-addr", "256.0.0.1:1"}, want: exitFailure, err: "listen"},
	} {
		var stdout, stderr lockedBuffer
		got := run(context.Background(), c.args, &stdout, &stderr, func(k string) string { return c.env[k] })
		assert.Equal(t, c.want, got, "%v: stderr %s", c.args, stderr.String())
		assert.Contains(t, stderr.String(), c.err, "%v", c.args)
	}
}
