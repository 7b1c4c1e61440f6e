package tests

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/memory"
)

// Listing (issue 10): a page costs at most 1.5x the first page, wherever
// it falls. The benchmark reads the first, a middle and the last page of a
// tenant's sessions (and of one owner's) by cursor, on one database per
// dialect, and logs each page's cost over the first page's:
//
//	go test ./tests -run XXX -bench BenchmarkListSessions -benchtime 2000x -count 3
//
// over 10,000 sessions; TURNKEEP_SCALE=1 for 100,000 sessions per tenant.

const (
	benchListSessions      = 10_000
	benchListSessionsScale = 100_000
	benchListLimit         = 50
)

func BenchmarkListSessions(b *testing.B) {
	n := benchListSessions
	if os.Getenv(scaleEnv) == "1" {
		n = benchListSessionsScale
	}
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			ctx := context.Background()
			s := sessOpen(b, d)
			// The tenant's n sessions, owned by ten users in turn.
			loaded := s.load(b, sessLoad{count: n, owner: listOwner})
			s.maintain(b)
			b.Logf("%s: %d sessions loaded in %v", d.Name, n, loaded.Round(time.Millisecond))

			for _, scope := range []struct {
				name  string
				user  string
				total int
			}{
				{"tenant", "", n},
				{"owner", listOwner(0), n / 10},
			} {
				b.Run(scope.name, func(b *testing.B) {
					first, middle, last := benchListCursors(b, s.mem, scope.user, scope.total)
					pages := []struct {
						name  string
						after string
					}{
						{"first-page", first},
						{"middle-page", middle},
						{"last-page", last},
					}
					list := func(b *testing.B, after string) {
						p, err := s.mem.ListSessions(ctx, memory.SessionQuery{User: scope.user, After: after, Limit: benchListLimit})
						if err != nil {
							b.Fatal(err)
						}
						if len(p.Sessions) != benchListLimit {
							b.Fatalf("%d sessions, want %d", len(p.Sessions), benchListLimit)
						}
					}
					for _, page := range pages {
						b.Run(page.name, func(b *testing.B) {
							b.ReportAllocs()
							for range b.N {
								list(b, page.after)
							}
						})
					}
					// The three pages in turn, each timed, so that drift and
					// noise fall on all alike: the ratios of the medians.
					b.Run("interleaved", func(b *testing.B) {
						ds := make([][]time.Duration, len(pages))
						for range b.N {
							for k, page := range pages {
								start := time.Now()
								list(b, page.after)
								ds[k] = append(ds[k], time.Since(start))
							}
						}
						base := median(ds[0])
						var ratios []string
						for k, page := range pages[1:] {
							m := median(ds[k+1])
							r := float64(m) / float64(base)
							b.ReportMetric(r, strings.TrimSuffix(page.name, "-page")+"/first")
							ratios = append(ratios, fmt.Sprintf("%s %v = %.2fx", page.name, m, r))
						}
						b.ReportMetric(0, "ns/op")
						if b.N >= 100 {
							b.Logf("%s, %s of %d sessions, pages of %d, %d rounds: medians first-page %v; %s (limit 1.5x)",
								d.Name, scope.name, scope.total, benchListLimit, b.N, base, strings.Join(ratios, "; "))
						}
					})
				})
			}
		})
	}
}

// benchListCursors returns the cursors of the first page (""), of the
// page halfway through the listing of user's sessions (the tenant's when
// ""), and of its last full page, reached with pages of 1,000.
func benchListCursors(b *testing.B, m *memory.PersistentBufferMemory, user string, total int) (first, middle, last string) {
	b.Helper()
	ctx := context.Background()
	const step = memory.MaxListLimit
	q := memory.SessionQuery{User: user, Limit: step}
	seen := 0
	next := func(limit int) string {
		q.Limit = limit
		p, err := m.ListSessions(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Sessions) != limit || p.Next == "" {
			b.Fatalf("page of %d after %d sessions: %d sessions, next %q", limit, seen, len(p.Sessions), p.Next)
		}
		seen += limit
		q.After = p.Next
		return p.Next
	}
	for seen+step <= total/2 {
		middle = next(step)
	}
	if seen != total/2 {
		middle = next(total/2 - seen)
	}
	for seen+step <= total-benchListLimit {
		last = next(step)
	}
	if seen != total-benchListLimit {
		last = next(total - benchListLimit - seen)
	}
	return "", middle, last
}
