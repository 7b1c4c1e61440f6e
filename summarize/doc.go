// Package summarize holds summarizers that need no model, and what every
// summarizer shares. A memory.Summarizer folds the turns that left a
// session's window into its summary (memory.WithSummarizer);
// NewExtractive is an offline, deterministic one, for tests, demos and
// setups with no model. A summarizer that calls a chat model is in
// github.com/turnkeep/turnkeep/contrib/openai.
package summarize
