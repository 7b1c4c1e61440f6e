package tiktoken

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	tk "github.com/pkoukk/tiktoken-go"
	loader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/turnkeep/turnkeep/memory"
)

// The encodings a Counter counts with.
const (
	O200kBase  = "o200k_base"  // GPT-4o, GPT-4.1, GPT-4.5, GPT-5, o1, o3, o4
	CL100kBase = "cl100k_base" // GPT-4, GPT-3.5 Turbo, text-embedding-3
)

// What CountTokens adds to the tokens of a message's text, after OpenAI's
// accounting of its chat format ("How to count tokens with tiktoken" in
// the OpenAI cookbook). The few tokens that prime every reply are a cost
// of the request, not of a message, and are not counted.
const (
	MessageTokens     = 3  // per message: its start, its end and the separator before its content
	NameTokens        = 1  // per message with a name
	ToolCallTokens    = 3  // per tool call: its framing (an estimate; OpenAI does not publish it)
	NonTextPartTokens = 85 // per part that is not text: OpenAI's price of a low-detail image
)

var (
	// ErrUnknownEncoding is returned by New for an encoding other than
	// O200kBase and CL100kBase.
	ErrUnknownEncoding = errors.New("tiktoken: unknown encoding")

	// ErrUnknownModel is returned by ForModel for a model whose encoding
	// it does not know.
	ErrUnknownModel = errors.New("tiktoken: unknown model")
)

func init() {
	// The BPE tables come from the loader module, which embeds them, so an
	// encoding never downloads anything. tiktoken-go keeps its loader in a
	// package variable read without a lock, so it is set here, before any
	// goroutine can load an encoding.
	tk.SetBpeLoader(loader.NewOfflineLoader())
}

// A Counter counts tokens exactly, in one of OpenAI's encodings. It is a
// memory.TokenCounter.
//
// The zero Counter counts in O200kBase. A Counter is safe for concurrent
// use by multiple goroutines.
type Counter struct {
	name string
	enc  *tk.Tiktoken // nil in the zero Counter
}

// New returns a Counter for encoding, O200kBase or CL100kBase. Any other
// is an error that wraps ErrUnknownEncoding.
//
// Its first call for an encoding decodes the encoding's tables, which
// takes about a second and some tens of megabytes; Counters of the same
// encoding share them.
func New(encoding string) (*Counter, error) {
	enc, err := load(encoding)
	if err != nil {
		return nil, err
	}
	return &Counter{name: encoding, enc: enc}, nil
}

// ForModel returns a Counter for the encoding of an OpenAI model, such as
// "gpt-4o-mini" (O200kBase) or "gpt-4-turbo" (CL100kBase); a fine-tuned
// model ("ft:gpt-4o-mini:...") takes its base model's. A model it does not
// know is an error that wraps ErrUnknownModel.
func ForModel(model string) (*Counter, error) {
	base := strings.TrimPrefix(model, "ft:")
	for _, f := range modelFamilies {
		rest, ok := strings.CutPrefix(base, f.prefix)
		if ok && (rest == "" || rest[0] == '-' || rest[0] == '.' || rest[0] == ':') {
			return New(f.encoding)
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownModel, model)
}

// modelFamilies maps model names to encodings: a model is of a family if
// its name is the prefix or starts with it and then '-', '.' or ':'.
// The first family that matches wins, so a longer prefix comes first.
var modelFamilies = []struct{ prefix, encoding string }{
	{"gpt-4o", O200kBase},
	{"chatgpt-4o", O200kBase},
	{"gpt-4.1", O200kBase},
	{"gpt-4.5", O200kBase},
	{"gpt-5", O200kBase},
	{"gpt-oss", O200kBase},
	{"o1", O200kBase},
	{"o3", O200kBase},
	{"o4-mini", O200kBase},
	{"gpt-4", CL100kBase},
	{"gpt-3.5-turbo", CL100kBase},
	{"gpt-35-turbo", CL100kBase},
	{"text-embedding-ada-002", CL100kBase},
	{"text-embedding-3-small", CL100kBase},
	{"text-embedding-3-large", CL100kBase},
}

// Encoding returns the name of the encoding c counts in.
func (c *Counter) Encoding() string {
	if c.enc == nil {
		return O200kBase
	}
	return c.name
}

// Count returns the number of tokens text encodes to. Special tokens such
// as "<|endoftext|>" in text are counted as ordinary text, as OpenAI's API
// treats them in a message.
func (c *Counter) Count(text string) int {
	if text == "" {
		return 0
	}
	enc := c.enc
	if enc == nil {
		var err error
		if enc, err = load(O200kBase); err != nil {
			// Cannot happen: the tables are embedded in the binary, and
			// the tests load them. Estimating beats panicking.
			return memory.EstimateTokens(text)
		}
	}
	return len(enc.EncodeOrdinary(text))
}

// CountTokens counts the tokens m takes in a chat request: the tokens of
// its role, content, name, tool call ID, the names and arguments of its
// tool calls and its text parts, plus MessageTokens, NameTokens for a
// name, ToolCallTokens per tool call and NonTextPartTokens per part that
// is not text.
func (c *Counter) CountTokens(m memory.Message) int {
	n := MessageTokens + c.Count(string(m.Role)) + c.Count(m.Content)
	if m.Name != "" {
		n += NameTokens + c.Count(m.Name)
	}
	n += c.Count(m.ToolCallID)
	for _, call := range m.ToolCalls {
		n += ToolCallTokens + c.Count(call.Name) + c.Count(call.Arguments)
	}
	for _, p := range m.Parts {
		if p.Type == "text" {
			n += c.Count(p.Text)
		} else {
			n += NonTextPartTokens
		}
	}
	return n
}

var (
	mu       sync.RWMutex // protects encoders
	encoders = map[string]*tk.Tiktoken{}
)

// load returns the encoder of encoding, decoding its tables on first use.
// Only a success is kept, so a failed load is tried again.
func load(encoding string) (*tk.Tiktoken, error) {
	if encoding != O200kBase && encoding != CL100kBase {
		return nil, fmt.Errorf("%w %q", ErrUnknownEncoding, encoding)
	}
	mu.RLock()
	enc, ok := encoders[encoding]
	mu.RUnlock()
	if ok {
		return enc, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if enc, ok := encoders[encoding]; ok {
		return enc, nil
	}
	enc, err := tk.GetEncoding(encoding)
	if err != nil {
		return nil, fmt.Errorf("tiktoken: load %s: %w", encoding, err)
	}
	encoders[encoding] = enc
	return enc, nil
}
