// Package tests holds integration and performance tests that cross packages and run on every dialect.
//
// It has no code of its own. The performance test asserts the statement
// counts of the performance contract and prints the seed scenario's phase
// times beside plain bun; the benchmarks put every turnkeep operation beside
// its raw-bun baseline in one run:
//
//	go test ./tests -run Perf -v
//	TURNKEEP_POSTGRES_URL=postgres://… go test ./tests -run XXX -bench . -benchtime 2000x -count 3
package tests
