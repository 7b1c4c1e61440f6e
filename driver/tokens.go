package driver

import (
	"math"
	"unicode"
	"unicode/utf8"
)

// A TokenCounter counts the tokens a message takes in a model's context.
// Its number is used as given: a per-message overhead (role markers,
// separators) belongs inside the counter. It must be safe for concurrent
// use and must not return a negative count (one is taken as 0).
//
// A message's count is taken once, when it is stored, and kept with it, so
// windows never recount history. An application that changes its counter
// changes the counts of messages stored from then on; stored messages keep
// the counts they were stored with (a window may then mix the two), until
// the session is cleared or expired.
type TokenCounter interface{ CountTokens(m Message) int }

// TokenCounterFunc adapts a function to TokenCounter.
type TokenCounterFunc func(m Message) int

// CountTokens calls f(m).
func (f TokenCounterFunc) CountTokens(m Message) int { return f(m) }

// DefaultTokenCounter is the counter a memory uses unless WithTokenCounter
// gives another: an estimate of OpenAI's o200k_base encoding (GPT-4o and
// later) from the text alone, with no tables, in one pass over it. For an
// exact count, use the counter of github.com/turnkeep/turnkeep/contrib/tiktoken.
//
// It counts the message's content, name, tool call names and arguments,
// tool call ID and text parts, plus MessageOverheadTokens per message, one
// token for a name, three per tool call and ImagePartTokens per part that
// is not text; text is estimated by EstimateTokens.
//
// Its error on text, estimate over exact o200k_base count, as measured by
// TestDefaultEstimateAccuracy in contrib/tiktoken on the samples in
// contrib/tiktoken/testdata (a few KB of each kind, cut into chunks of
// about 200 bytes), over all of a kind's text and, in brackets, the mean
// absolute error per chunk:
//
//	English prose  +3.5% (3.5%)    Chinese   -0.9% (8.3%)
//	Go             +3.6% (4.9%)    Japanese  -3.7% (4.2%)
//	Python         +3.8% (6.6%)    Korean    +3.8% (5.9%)
//	JSON           +3.8% (4.0%)    emoji     +0.5% (3.3%)
//	mixed          +1.0% (7.1%)    overall   +1.5% (5.3%)
//
// The test fails if a kind's error passes 15%, or its error per chunk
// 20%. Against cl100k_base (GPT-4, GPT-3.5) English and code come out as
// close, but Chinese, Japanese and Korean take 30 to 40% more tokens there
// than estimated, and emoji about 20% more.
var DefaultTokenCounter TokenCounter = defaultCounter{}

// Constants of DefaultTokenCounter.
const (
	MessageOverheadTokens = 4  // per message: the role and the separators a chat format adds
	ImagePartTokens       = 85 // per non-text part: OpenAI's price of a low-detail image
)

type defaultCounter struct{}

func (defaultCounter) CountTokens(m Message) int {
	n := MessageOverheadTokens + EstimateTokens(m.Content)
	if m.Name != "" {
		n += 1 + EstimateTokens(m.Name)
	}
	if m.ToolCallID != "" {
		n += EstimateTokens(m.ToolCallID)
	}
	for _, c := range m.ToolCalls {
		n += 3 + EstimateTokens(c.Name) + EstimateTokens(c.Arguments)
	}
	for _, p := range m.Parts {
		if p.Type == "text" {
			n += EstimateTokens(p.Text)
		} else {
			n += ImagePartTokens
		}
	}
	return n
}

// EstimateTokens estimates how many tokens s takes in OpenAI's o200k_base
// encoding from its characters alone, in one pass, with no tables and no
// allocation. It follows how the encoding splits text into pieces before
// it looks them up:
//
//   - a word (a run of letters, split where a lower case letter meets an
//     upper case one, as in camelCase) is a token with the space or the one
//     punctuation mark before it, plus 0.15 for each letter past the sixth;
//     a lone mark right before a word adds 0.25;
//   - a number is a token per three digits, plus one for a space before it;
//   - a run of punctuation is a token with the space before it and the
//     newlines after it, plus 0.2 for each mark past the first;
//   - a run of newlines is a token, and so is a run of two or more spaces
//     or tabs (bar the last, which goes with what follows);
//   - a Chinese character, kana or Hangul syllable is 0.82 of a token; an
//     emoji two (1.5 below U+10000), and a joiner or variation selector
//     between emoji one.
//
// The figures are fitted to the samples of contrib/tiktoken; see
// DefaultTokenCounter for the error they give. A non-empty s is at least
// one token.
func EstimateTokens(s string) int {
	var (
		n      int64 // the estimate so far, in thousandths of a token
		word   int64 // letters in the current word; 0 outside a word
		lower  bool  // the word's last letter is lower case
		digits int64 // digits in the current number
		punct  int64 // marks in the current run of punctuation
		spaced bool  // a space went with the punctuation run
		spaces int   // spaces and tabs since the last text
		nl     bool  // in a run of newlines (and the spaces between them)
	)
	for i := 0; i <= len(s); {
		if i < len(s) && word > 0 && 'a' <= s[i] && s[i] <= 'z' {
			word++ // the common case, and nothing else to do
			lower = true
			i++
			continue
		}
		k := kindEnd // past the end of s, which ends every piece
		if i < len(s) {
			r, size := rune(s[i]), 1
			if r >= utf8.RuneSelf {
				r, size = utf8.DecodeRuneInString(s[i:])
			}
			i += size
			if r == '\'' && word > 0 && i < len(s) && isASCIILetter(s[i]) {
				continue // a contraction ("can't") stays in its word
			}
			k = classify(r)
		} else {
			i++
		}

		// End the pieces r does not continue.
		if word > 0 && (k != kindLetter && k != kindUpper || k == kindUpper && lower) {
			n += costWord
			if word > wordLetters {
				n += (word - wordLetters) * costLetter
			}
			word = 0
		}
		if digits > 0 && k != kindDigit {
			n += (digits + 2) / 3 * costDigits
			digits = 0
		}
		if punct > 0 && k != kindPunct {
			if punct == 1 && !spaced && (k == kindLetter || k == kindUpper || k == kindCJK) {
				n += costLead // the mark goes with the word
			} else {
				n += costPunct + (punct-1)*costPunctMark
				if k == kindNewline {
					nl = true // the newlines go with the punctuation
				}
			}
			punct = 0
		}
		switch {
		case k == kindSpace || k == kindNewline:
		case k == kindEnd && spaces > 0:
			n += costSpaces
		default:
			nl = false
			if spaces > 1 {
				n += costSpaces // all but the last
			}
			if spaces > 0 && k == kindDigit {
				n += costSpaces // a space never goes with a number
			}
		}
		wasSpaced := spaces > 0
		if k != kindSpace {
			spaces = 0
		}

		switch k {
		case kindLetter, kindUpper:
			word++
			lower = k == kindLetter
		case kindDigit:
			digits++
		case kindPunct:
			if punct == 0 {
				spaced = wasSpaced
			}
			punct++
		case kindSpace:
			spaces++
		case kindNewline:
			if !nl {
				n += costNewline
				nl = true
			}
		case kindCJK:
			n += costCJK
		case kindEmoji:
			n += costEmoji
		case kindSymbol:
			n += costSymbol
		case kindJoiner:
			n += costJoiner
		}
	}
	switch tokens := (n + 500) / 1000; {
	case tokens == 0 && s != "":
		return 1
	case tokens > math.MaxInt:
		return math.MaxInt
	default:
		return int(tokens)
	}
}

// Costs of EstimateTokens, in thousandths of a token.
const (
	costWord      = 1000 // a word of up to wordLetters letters
	wordLetters   = 6
	costLetter    = 150  // each letter of a word past wordLetters
	costDigits    = 1000 // up to three digits
	costPunct     = 1000 // a run of punctuation
	costPunctMark = 200  // each mark of a run past the first
	costLead      = 250  // one mark right before a word
	costSpaces    = 1000 // a run of spaces and tabs, or a space before a number
	costNewline   = 1000 // a run of newlines
	costCJK       = 820  // a Chinese character, kana or Hangul syllable
	costEmoji     = 2000 // an emoji or other symbol from U+10000 on
	costSymbol    = 1500 // a symbol below U+10000 (✅, ☀)
	costJoiner    = 1000 // a zero width joiner or variation selector
)

// The kinds of character EstimateTokens tells apart.
const (
	kindLetter  = iota // a lower case letter, or one without case
	kindUpper          // an upper case ASCII letter
	kindDigit          // a digit
	kindPunct          // punctuation, and symbols that are not emoji
	kindSpace          // a space or a tab
	kindNewline        // a line feed or a carriage return
	kindCJK            // a Chinese character, kana or Hangul
	kindEmoji          // an emoji from U+10000 on
	kindSymbol         // a pictographic symbol below U+10000
	kindJoiner         // a zero width joiner, variation selector or tag
	kindEnd            // the end of the text
)

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// classify tells which kind r is, by ranges of code points for the
// scripts and symbols that chats use most, and by package unicode for the
// rest.
func classify(r rune) int {
	switch {
	case 'a' <= r && r <= 'z':
		return kindLetter
	case 'A' <= r && r <= 'Z':
		return kindUpper
	case '0' <= r && r <= '9':
		return kindDigit
	case r == ' ' || r == '\t':
		return kindSpace
	case r == '\n' || r == '\r':
		return kindNewline
	case r < 0xC0: // the rest of ASCII, and Latin-1's punctuation
		return kindPunct
	case r < 0x370: // Latin letters and combining accents
		if r == 0xD7 || r == 0xF7 { // × ÷
			return kindPunct
		}
		return kindLetter
	case 0x3040 <= r && r <= 0x30FF, // kana
		0x3400 <= r && r <= 0x4DBF, 0x4E00 <= r && r <= 0x9FFF, 0xF900 <= r && r <= 0xFAFF, // Han
		0x20000 <= r && r <= 0x3FFFF,                                                       // Han beyond U+FFFF
		0xAC00 <= r && r <= 0xD7AF, 0x1100 <= r && r <= 0x11FF, 0x3130 <= r && r <= 0x318F: // Hangul
		return kindCJK
	case r == 0x200D, 0xFE00 <= r && r <= 0xFE0F, 0xE0000 <= r && r <= 0xE007F:
		return kindJoiner
	case 0x1F000 <= r && r <= 0x1FAFF:
		return kindEmoji
	case 0x2300 <= r && r <= 0x23FF, 0x2600 <= r && r <= 0x27BF, 0x2B00 <= r && r <= 0x2BFF:
		return kindSymbol
	case unicode.IsLetter(r) || unicode.IsMark(r):
		return kindLetter
	case unicode.IsNumber(r):
		return kindDigit
	case unicode.IsSpace(r):
		return kindSpace
	}
	return kindPunct
}
