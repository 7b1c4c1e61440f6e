package tiktoken_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
)

// downloads counts the HTTP requests the tests' process made. TestMain
// makes every request fail and be counted, so a test that loads an
// encoding proves that loading needs no network (see TestLoadsOffline).
var downloads atomic.Int64

type noNetwork struct{}

func (noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	downloads.Add(1)
	return nil, errors.New("no network in tests: " + r.URL.String())
}

func TestMain(m *testing.M) {
	// tiktoken-go's own loader fetches tables with http.Get, through
	// http.DefaultTransport, after looking in TIKTOKEN_CACHE_DIR: point
	// that at an empty directory, and the transport at noNetwork.
	dir, err := os.MkdirTemp("", "tiktoken-cache")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TIKTOKEN_CACHE_DIR", dir)
	http.DefaultTransport = noNetwork{}
	code := m.Run()
	os.RemoveAll(dir)
	if n := downloads.Load(); n != 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "%d downloads were attempted; want none\n", n)
		code = 1
	}
	os.Exit(code)
}
