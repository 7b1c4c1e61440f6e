// Package searchtext splits text into the terms a search index holds:
// lower-cased runs of letters, digits and marks, each character of a script
// written without spaces (Han, Hiragana, Katakana, Hangul) a term of its
// own, everything else a separator.
//
// It is the one implementation behind memory.SearchTerms and
// memory.SearchText, written for the save path: ASCII is classified and
// lower-cased byte by byte, every other rune by a table built once per
// block of 256 code points (no walk of Unicode range tables per rune), and
// AppendText writes the search text into a caller's buffer, so that a save
// can build it inside the row it sends without a string of its own.
//
//	searchtext.Text("Hello, 世界 v2") == "hello 世 界 v2"
//
// Its functions are safe for concurrent use.
package searchtext
