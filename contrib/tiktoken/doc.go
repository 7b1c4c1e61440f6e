// Package tiktoken counts tokens exactly as OpenAI's models do, for the
// memory package's token windows and budgets.
//
// A Counter counts in one of the encodings o200k_base (GPT-4o and later)
// and cl100k_base (GPT-4, GPT-3.5). It is a memory.TokenCounter, so a
// memory that should count exactly takes it as an option:
//
//	c, err := tiktoken.ForModel("gpt-4o-mini") // or tiktoken.New(tiktoken.O200kBase)
//	if err != nil {
//		return err
//	}
//	m := memory.NewBufferMemory(memory.WithTokenCounter(c), memory.WithTokenBudget(8000))
//
// A message counts as in OpenAI's chat format: the tokens of its text
// fields plus MessageTokens, and NameTokens, ToolCallTokens and
// NonTextPartTokens where they apply (see Counter.CountTokens).
//
// The encodings' tables come embedded in the binary, from
// github.com/pkoukk/tiktoken-go-loader, which this package installs as
// tiktoken-go's BPE loader when it is initialized: nothing is downloaded
// at run time, and a program that imports this package grows by the
// tables (about 7 MB). The first use of an encoding decodes its table,
// which takes about a second and some tens of megabytes of memory; every
// Counter of the encoding shares it. The memory package itself embeds no
// tables: its DefaultTokenCounter estimates, within a few percent on the
// samples in testdata (see its doc and TestDefaultEstimateAccuracy).
//
// Counters are safe for concurrent use by multiple goroutines.
package tiktoken
