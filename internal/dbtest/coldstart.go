package dbtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cold-start measurement: each round starts a new process per side (the
// test binary again, running one test), which opens an existing database
// and does the first load, and times that inside the process, so that
// nothing a process caches (a model's reflection, a prepared statement,
// a connection, a schema read) carries over from one round to the next.
// Each time is taken twice: the wall clock, and the CPU time the process
// spent (user and system, every thread), which waiting for a busy
// machine's cores does not inflate.

// The variables that make a test binary a cold-start child: the side to
// run and the database file it opens.
const (
	EnvColdSide = "TURNKEEP_COLD_SIDE"
	EnvColdDB   = "TURNKEEP_COLD_DB"
)

// coldMark begins the line a child prints with its times in nanoseconds:
// wall clock, then CPU.
const coldMark = "turnkeep-cold-start-ns="

// A ColdTime is what one child measured.
type ColdTime struct {
	Wall, CPU time.Duration
}

// A ColdSide is one side of a cold-start measurement.
type ColdSide struct {
	Name string
	// Path is the database file, made and closed by the parent before the
	// rounds.
	Path string
	// Start is what the child times: open the database at path and do the
	// first load, checking what it read. It runs once per process and
	// returns what closes what it opened, which the child runs untimed
	// (so that the next process finds the file as a clean exit leaves it).
	Start func(ctx context.Context, path string) (close func() error, err error)
}

// ColdChild is the body of the test that a child runs (named childTest
// in ColdRounds): it runs the side EnvColdSide names, times it, and
// prints the time for the parent. Outside a child it skips.
func ColdChild(t *testing.T, sides []ColdSide) {
	name := os.Getenv(EnvColdSide)
	if name == "" {
		t.Skipf("a cold-start child: run by ColdRounds with %s set", EnvColdSide)
	}
	i := slices.IndexFunc(sides, func(s ColdSide) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("unknown cold-start side %q", name)
	}
	cpu0 := processCPU(t)
	start := time.Now()
	closeFn, err := sides[i].Start(context.Background(), os.Getenv(EnvColdDB))
	elapsed := time.Since(start)
	cpu := processCPU(t) - cpu0
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := closeFn(); err != nil {
		t.Fatalf("%s: close: %v", name, err)
	}
	fmt.Printf("%s%d,%d\n", coldMark, elapsed.Nanoseconds(), cpu.Nanoseconds())
}

// processCPU returns the CPU time the process has spent, user and system.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ColdRound runs each side once, each in a new process of the test binary
// running only childTest, in the order of sides rotated by round (so that
// no side always goes first), and returns their times in the order of
// sides.
func ColdRound(tb testing.TB, childTest string, sides []ColdSide, round int) []ColdTime {
	tb.Helper()
	out := make([]ColdTime, len(sides))
	for k := range sides {
		i := (k + round) % len(sides)
		out[i] = coldChild(tb, childTest, sides[i])
	}
	return out
}

func coldChild(tb testing.TB, childTest string, side ColdSide) ColdTime {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+childTest+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), EnvColdSide+"="+side.Name, EnvColdDB+"="+side.Path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("cold start %s: %v\n%s%s", side.Name, err, stdout.Bytes(), stderr.Bytes())
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), coldMark); ok {
			wall, cpu, _ := strings.Cut(v, ",")
			w, err1 := strconv.ParseInt(wall, 10, 64)
			c, err2 := strconv.ParseInt(cpu, 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				tb.Fatalf("cold start %s: %q: %v", side.Name, sc.Text(), err)
			}
			return ColdTime{Wall: time.Duration(w), CPU: time.Duration(c)}
		}
	}
	tb.Fatalf("cold start %s: the child printed no time (did it run %s?)\n%s", side.Name, childTest, stdout.Bytes())
	return ColdTime{}
}

// Median returns the median of xs (the mean of the two middle values of
// an even count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
