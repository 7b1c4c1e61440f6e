package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// copyMessages is the size of the copy test's source: 100,000 messages,
// 10,000 in -short mode.
func copyMessages() int {
	if testing.Short() {
		return 10_000
	}
	return 100_000
}

// genSource writes n messages into a new SQLite file with testdata/gen
// (built by TestMain without -race): three tenants, sessions of 50 turns
// of 4 messages, owners, titles and metadata on some, one empty session.
func genSource(t *testing.T, n int) string {
	t.Helper()
	url := dbtest.SQLiteURL(t)
	out, err := exec.Command(genBin, url, fmt.Sprint(n)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return url
}

// TestCopyInterruptedAndResumed copies a source of copyMessages() messages,
// kills the copy at a random point, runs it again, and checks that every
// count matches and sessions are identical, on SQLite to SQLite and to
// PostgreSQL when TURNKEEP_POSTGRES_URL is set.
func TestCopyInterruptedAndResumed(t *testing.T) {
	n := copyMessages()
	start := time.Now()
	src := genSource(t, n)
	t.Logf("source: %d messages written in %v", n, time.Since(start).Round(time.Millisecond))
	for _, to := range []struct {
		name string
		url  func(testing.TB) string
	}{{"sqlite", dbtest.SQLiteURL}, {"pg", dbtest.PostgresURL}} {
		t.Run(to.name, func(t *testing.T) {
			dst := to.url(t)
			for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
				// Interrupt when between 10% and 80% of the turns are copied.
				at := int64(n/4) * int64(10+rand.IntN(70)) / 100
				if i == 1 {
					at = min(int64(n/4)-1, at+int64(n/4)/10) // the second one further on
				}
				copied, took := interruptCopy(t, src, dst, at, sig)
				t.Logf("copy interrupted by %v after %d of %d turns (%v)", sig, copied, n/4, took.Round(time.Millisecond))
			}
			start := time.Now()
			r := run(t, "", "copy", "--from", src, "--to", dst).want(t, 0)
			t.Logf("resumed copy finished in %v: %s", time.Since(start).Round(time.Millisecond), lastLine(r.stdout))
			require.NotContains(t, r.stdout, "DIFFERENT")
			require.Contains(t, r.stdout, fmt.Sprintf("copied %d sessions", n/4/50+1)) // every session, some already complete

			// Run again: nothing to do, nothing doubled.
			r = run(t, "", "copy", "--from", src, "--to", dst, "--json").want(t, 0)
			require.Contains(t, r.stdout, `"turns": 0`)
			require.Contains(t, r.stdout, `"ok": true`)

			statsSrc := run(t, "", "stats", "--db", src, "--json").want(t, 0).stdout
			statsDst := run(t, "", "stats", "--db", dst, "--json").want(t, 0).stdout
			require.Equal(t, dropSize(statsSrc), dropSize(statsDst))
			require.Contains(t, statsDst, fmt.Sprintf(`"messages": %d`, n))

			// Sessions are equal, IDs, times, tool calls and tokens included.
			for _, s := range []struct{ tenant, id string }{{"", "s0000"}, {"acme", "s0001"}, {"globex", "s0005"}, {"acme", "empty"}} {
				a := run(t, "", "sessions", "export", s.id, "--tenant", s.tenant, "--db", src).want(t, 0).stdout
				b := run(t, "", "sessions", "export", s.id, "--tenant", s.tenant, "--db", dst).want(t, 0).stdout
				require.Equal(t, stripTimes(a), stripTimes(b), "session %s/%s", s.tenant, s.id)
			}
		})
	}
}

// interruptCopy starts a copy, and sends sig once its progress lines say
// at least at turns are copied.
func interruptCopy(t *testing.T, src, dst string, at int64, sig syscall.Signal) (int64, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "copy", "--from", src, "--to", dst)
	out, err := cmd.StderrPipe() // progress goes to stderr
	require.NoError(t, err)
	var stderr strings.Builder
	start := time.Now()
	require.NoError(t, cmd.Start())
	var copied int64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		var done, total int64
		if _, err := fmt.Sscanf(sc.Text(), "copied %d/%d", &done, &total); err == nil {
			copied = done
			if done >= at {
				require.NoError(t, cmd.Process.Signal(sig))
				break
			}
		}
	}
	for sc.Scan() { // drain
		stderr.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	require.Error(t, err, "the copy ended before it was interrupted (at %d turns)", at)
	if sig == syscall.SIGINT {
		require.Contains(t, stderr.String(), "run the same command again to resume")
		require.Equal(t, exitFailure, cmd.ProcessState.ExitCode())
	}
	return copied, time.Since(start)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func dropSize(stats string) string {
	var out []string
	for _, l := range strings.Split(stats, "\n") {
		if !strings.Contains(l, "database_bytes") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestCopyUsage(t *testing.T) {
	src := dbtest.SQLiteURL(t)
	seed(t, src)
	run(t, "", "copy", "--from", src).want(t, exitUsage)
	run(t, "", "copy", "--from", src, "--to", src).want(t, exitUsage)
	r := run(t, "", "copy", "--from", "sqlite:///"+t.TempDir()+"/none.db", "--to", dbtest.SQLiteURL(t)).want(t, exitNotFound)
	require.Contains(t, r.stderr, "--from")
	run(t, "", "copy", "--from", src, "--to", "bogus://x").want(t, exitUsage)
}

// TestCopyAcrossEngines copies a SQLite database to MariaDB, and that one
// to PostgreSQL, with the command: every count and every session equal,
// IDs, times, tool calls and tokens included. It runs when
// TURNKEEP_MYSQL_URL and TURNKEEP_POSTGRES_URL are set.
func TestCopyAcrossEngines(t *testing.T) {
	const n = 2_000 // 10 sessions of 50 turns of 4 messages
	src := genSource(t, n)
	maria := dbtest.MySQLURL(t)
	pg := dbtest.PostgresURL(t)
	for _, hop := range [][2]string{{src, maria}, {maria, pg}} {
		r := run(t, "", "copy", "--from", hop[0], "--to", hop[1], "--json").want(t, 0)
		require.Contains(t, r.stdout, `"ok": true`)
		require.NotContains(t, r.stdout, "DIFFERENT")
	}
	want := dropSize(run(t, "", "stats", "--db", src, "--json").want(t, 0).stdout)
	for _, dst := range []string{maria, pg} {
		require.Equal(t, want, dropSize(run(t, "", "stats", "--db", dst, "--json").want(t, 0).stdout))
		for _, s := range []struct{ tenant, id string }{{"", "s0000"}, {"acme", "s0001"}, {"globex", "s0005"}, {"acme", "empty"}} {
			a := run(t, "", "sessions", "export", s.id, "--tenant", s.tenant, "--db", src).want(t, 0).stdout
			b := run(t, "", "sessions", "export", s.id, "--tenant", s.tenant, "--db", dst).want(t, 0).stdout
			require.Equal(t, stripTimes(a), stripTimes(b), "session %s/%s", s.tenant, s.id)
		}
	}
}
