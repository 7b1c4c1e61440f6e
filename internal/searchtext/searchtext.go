package searchtext

import (
	"iter"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// A rune's class: what it is to the splitter.
const (
	separator uint8 = iota // ends a term
	wordRune               // letter, digit or mark: part of a term
	cjkRune                // a character of Han, Hiragana, Katakana or Hangul: a term of its own
)

// classify is a rune's class by the Unicode tables: the definition the
// lookup tables cache.
func classify(r rune) uint8 {
	switch {
	case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul):
		return cjkRune
	case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
		return wordRune
	}
	return separator
}

// asciiClass is the class of each ASCII byte.
var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for c := range t {
		t[c] = classify(rune(c))
	}
	return t
}()

// tableLimit bounds the runes classified through blocks: the first four
// planes, which hold every script the splitter tells apart (the Han
// extensions reach into the third); a rune past it is classified directly.
const tableLimit = 0x40000

// blocks caches the classes of the runes below tableLimit, 256 to a block,
// each block built on the first use of one of its runes. Two goroutines
// may build the same block at once; they build equal tables, and either
// is kept.
var blocks [tableLimit >> 8]atomic.Pointer[[256]uint8]

// class is r's class.
func class(r rune) uint8 {
	if r < utf8.RuneSelf {
		return asciiClass[r]
	}
	if r >= tableLimit {
		return classify(r)
	}
	b := blocks[r>>8].Load()
	if b == nil {
		b = new([256]uint8)
		base := r &^ 0xff
		for i := range b {
			b[i] = classify(base + rune(i))
		}
		blocks[r>>8].Store(b)
	}
	return b[r&0xff]
}

// All yields the terms of text, in order, one at a time, so that a caller
// can stop early. A term already in lower case is a substring of text, not
// a copy.
func All(text string) iter.Seq[string] {
	return func(yield func(string) bool) {
		start := -1 // where the current term began; -1 between terms
		for i := 0; i < len(text); {
			r, size := rune(text[i]), 1
			if r >= utf8.RuneSelf {
				r, size = utf8.DecodeRuneInString(text[i:])
			}
			c := class(r)
			if start >= 0 && c != wordRune {
				if !yield(strings.ToLower(text[start:i])) {
					return
				}
				start = -1
			}
			switch {
			case c == cjkRune:
				if !yield(text[i : i+size]) {
					return
				}
			case c == wordRune && start < 0:
				start = i
			}
			i += size
		}
		if start >= 0 {
			yield(strings.ToLower(text[start:]))
		}
	}
}

// Terms returns the terms of text, in order; nil when it has none.
func Terms(text string) []string {
	var terms []string
	for t := range All(text) {
		terms = append(terms, t)
	}
	return terms
}

// Text is text as a search index holds it: its terms separated by single
// spaces, so that any tokenizer splitting on spaces finds them.
func Text(text string) string {
	if len(text) == 0 {
		return ""
	}
	b := AppendText(make([]byte, 0, len(text)), text)
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

// AppendText appends Text(text) to dst and returns the extended buffer.
// The text it appends holds no byte that JSON escapes: letters, digits,
// marks and spaces only.
func AppendText(dst []byte, text string) []byte {
	first := true // no term appended yet
	inWord := false
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf { // ASCII: one byte, lower-cased in place
			switch asciiClass[c] {
			case wordRune:
				if !inWord {
					if !first {
						dst = append(dst, ' ')
					}
					first, inWord = false, true
				}
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				dst = append(dst, c)
			default:
				inWord = false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		switch class(r) {
		case cjkRune:
			if !first {
				dst = append(dst, ' ')
			}
			first, inWord = false, false
			dst = append(dst, text[i:i+size]...)
		case wordRune:
			if !inWord {
				if !first {
					dst = append(dst, ' ')
				}
				first, inWord = false, true
			}
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
		default:
			inWord = false
		}
		i += size
	}
	return dst
}
