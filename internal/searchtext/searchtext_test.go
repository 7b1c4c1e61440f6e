package searchtext

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The reference: memory.SearchTerms and memory.SearchText as they were
// before this package (turnkeep 2e761bd), copied verbatim. The fast
// functions must agree with them on every input.

func refTerms(text string) []string {
	var terms []string
	start := -1
	for i, r := range text {
		word := unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
		if start >= 0 && (!word || refCJK(r)) {
			terms = append(terms, strings.ToLower(text[start:i]))
			start = -1
		}
		switch {
		case refCJK(r):
			terms = append(terms, string(r))
		case word && start < 0:
			start = i
		}
	}
	if start >= 0 {
		terms = append(terms, strings.ToLower(text[start:]))
	}
	return terms
}

func refText(text string) string { return strings.Join(refTerms(text), " ") }

func refCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul)
}

// agree fails t unless every function of the package gives text's
// reference result.
func agree(t *testing.T, text string) {
	t.Helper()
	want := refTerms(text)
	if got := Terms(text); !slices.Equal(got, want) {
		t.Fatalf("Terms(%q) = %q; want %q", text, got, want)
	}
	if got, want := Text(text), refText(text); got != want {
		t.Fatalf("Text(%q) = %q; want %q", text, got, want)
	}
	if got, want := string(AppendText([]byte("x"), text)), "x"+refText(text); got != want {
		t.Fatalf("AppendText(x, %q) = %q; want %q", text, got, want)
	}
	// Stopping early yields a prefix.
	var got []string
	for term := range All(text) {
		got = append(got, term)
		if len(got) == 2 {
			break
		}
	}
	if n := min(2, len(want)); !slices.Equal(got, want[:n]) {
		t.Fatalf("the first %d of All(%q) = %q; want %q", n, text, got, want[:n])
	}
}

func TestAgreesWithReference(t *testing.T) {
	for _, text := range []string{
		"", " ", "a", "A", "Hello, World!", "HELLO world 42", "v2.0-rc1_beta",
		"Ünïcödé ÀÉÎ straße İstanbul ΑΒΓ Σίσυφος", "Привет, МИР", "naïve café",
		"世界", "Hello世界Bye", "ひらがなカタカナ한국어", "mixed漢字and123数字",
		"e\u0301 a\u0300b", "\u0301lead", "٣٤٥ ١٢ digits", "tab\there\nnewline",
		"\xff\xfe invalid \xc3 bytes\xe4\xb8", "\ufffd replaced", "emoji 😀 ok 👍🏽",
		"𠀀𪜀 ext B", "𝐀𝐁𝐂 math bold", "ǅungla ǈ titlecase", "K Kelvin Å angstrom",
		"ー・〆々〇", "ｈａｌｆ ｗｉｄｔｈ ＡＢＣ", "ﾊﾝｶｸ ｶﾀｶﾅ",
	} {
		agree(t, text)
	}
}

// TestEveryRune compares the class of every code point with the reference
// definition, in words of each kind of neighbour.
func TestEveryRune(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		if got, want := class(r), classify(r); got != want {
			t.Fatalf("class(%U) = %d; want %d", r, got, want)
		}
		if r%7 == 0 || r < 0x3000 {
			s := string(r)
			agree(t, "Ab"+s+"cD "+s+s+" x")
		}
	}
}

func TestRandomText(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 1))
	pieces := []string{"a", "Z", "9", " ", ",", "é", "É", "世", "ひ", "カ", "한", "\u0301", "\xff", "ß", "Σ", "😀", "𠀀", "İ", "\t", "ـ"}
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(24) {
			if rng.IntN(4) == 0 {
				b.WriteRune(rng.Int32N(0x30000))
			} else {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
		}
		agree(t, b.String())
	}
}

func FuzzAgreesWithReference(f *testing.F) {
	for _, s := range []string{"Hello, 世界", "straße İ", "\xff\xfeé", "a\u0301b", "ｈａｌｆ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) { agree(t, text) })
}

func TestAppendTextNeedsNoJSONEscape(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r += 1 + r/4096 {
		for _, c := range AppendText(nil, "a"+string(r)+"b") {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				t.Fatalf("AppendText of %U holds %q", r, c)
			}
		}
		if s := Text(string(r)); strings.ContainsAny(s, "\u2028\u2029") {
			t.Fatalf("Text of %U holds a line separator", r)
		}
	}
}

var benchText = strings.Repeat("Open the project settings, choose Keys, create a new key, deploy it, then revoke the old one. ", 4)[:300]

func BenchmarkText(b *testing.B) {
	for _, c := range []struct{ name, text string }{
		{"ascii", benchText},
		{"latin", strings.Repeat("Übergrößenträger für Straßenbahn, çà et là. ", 7)},
		{"cjk", strings.Repeat("東京の天気は晴れです。明日も良い天気でしょう。", 5)},
	} {
		b.Run(c.name+"/reference", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.text)))
			for b.Loop() {
				refText(c.text)
			}
		})
		b.Run(c.name+"/searchtext", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.text)))
			for b.Loop() {
				Text(c.text)
			}
		})
	}
}
