package dataflow

import "github.com/turnkeep/turnkeep/internal/sqlcore"

// MaxParams exposes the bound-parameter budget of one bulk statement, so
// tests can size rows to span a known number of batches.
const MaxParams = maxParams

// ConnLost exposes the lost-connection test that BEGIN and QueryRetry
// retry on.
var ConnLost = sqlcore.ConnLost
