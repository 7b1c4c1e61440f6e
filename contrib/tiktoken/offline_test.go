package tiktoken_test

import (
	"testing"

	tk "github.com/pkoukk/tiktoken-go"

	"github.com/turnkeep/turnkeep/contrib/tiktoken"
)

// TestLoadsOffline loads both encodings with the network cut off (see
// TestMain) and checks their counts of known strings, which only the real
// tables give.
func TestLoadsOffline(t *testing.T) {
	known := []struct {
		text          string
		o200k, cl100k int
	}{
		{"hello world", 2, 2},
		{"Hello, world!", 4, 4},
		{"The quick brown fox jumps over the lazy dog.", 10, 10},
		{"你好，世界", 3, 6},
		{"안녕하세요", 2, 5},
		{"👍", 1, 3},
		{"can't", 1, 2},
		{"<|endoftext|>", 7, 7}, // a special token in text is text
	}
	before := downloads.Load()
	for _, encoding := range []string{tiktoken.O200kBase, tiktoken.CL100kBase} {
		c, err := tiktoken.New(encoding)
		if err != nil {
			t.Fatalf("New(%q): %v", encoding, err)
		}
		for _, k := range known {
			want := k.o200k
			if encoding == tiktoken.CL100kBase {
				want = k.cl100k
			}
			if got := c.Count(k.text); got != want {
				t.Errorf("%s: Count(%q) = %d; want %d", encoding, k.text, got, want)
			}
		}
	}
	if n := downloads.Load() - before; n != 0 {
		t.Errorf("loading made %d HTTP requests; want none", n)
	}
}

// TestNoNetworkCatchesDownloads shows that TestLoadsOffline would see a
// download: tiktoken-go's default loader, which downloads, fails here and
// is counted.
func TestNoNetworkCatchesDownloads(t *testing.T) {
	before := downloads.Load()
	_, err := tk.NewDefaultBpeLoader().LoadTiktokenBpe("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken")
	n := downloads.Load() - before
	downloads.Add(-n) // expected here; TestMain counts only the others
	if err == nil || n != 1 {
		t.Fatalf("the default loader: error %v after %d requests; want an error after 1", err, n)
	}
}
