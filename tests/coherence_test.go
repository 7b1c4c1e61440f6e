package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/build"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// This file runs two application servers (tests/internal/appserver) on one
// database and routes requests between them as a load balancer would,
// checking every window a server returns against the truth: the turns
// acknowledged per session since its last acknowledged clear, windowed to
// the servers' max turns.

// envCoherenceSeed replays the request sequence of a logged run.
const envCoherenceSeed = "TURNKEEP_COHERENCE_SEED"

const (
	coherenceMaxTurns = 5
	coherenceSessions = 4
	// staleBound is the WithStaleReads bound of the staleness measurement,
	// and stalenessMargin what the scheduling of three processes on two
	// cores may add to it.
	staleBound      = 200 * time.Millisecond
	stalenessMargin = 150 * time.Millisecond
)

// TestTwoAppServers checks that two processes sharing a database never
// return a stale or wrong window with the default (coherent) cache, that
// the check detects a non-coherent one, and what WithStaleReads promises:
// a server sees its own writes, never shows a state that never existed,
// and lags other servers' writes by at most its bound.
func TestTwoAppServers(t *testing.T) {
	bin := appServerBinary(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envCoherenceSeed); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", envCoherenceSeed, err)
		}
	}
	t.Logf("seed %d (replay with %s=%d)", seed, envCoherenceSeed, seed)

	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		t.Run("coherent", func(t *testing.T) {
			url := d.URL(t)
			r := runBalanced(t, bin, url, seed)
			t.Logf("%s", r)
			for _, w := range r.wrong[:min(len(r.wrong), 10)] {
				t.Errorf("stale or wrong window: %s", w)
			}
			if len(r.wrong) > 0 {
				t.Errorf("%d of %d loads returned a stale or wrong window; want 0", len(r.wrong), r.loads)
			}
			for i, s := range r.stats {
				if s.Hits == 0 {
					t.Errorf("server %d: %+v: no load was answered from the cache", i, s)
				}
			}
			// The test has teeth only if the other server really moved
			// sessions a server had cached, and the caches noticed.
			if r.crossLoads == 0 || r.stats[0].Stale+r.stats[1].Stale == 0 {
				t.Errorf("%d loads after the other server's writes, %d stale windows caught: the run proved nothing",
					r.crossLoads, r.stats[0].Stale+r.stats[1].Stale)
			}
			// The model itself agrees with the store, read afresh.
			b, err := backend.NewDataFlowBackend(openDB(t, url))
			if err != nil {
				t.Fatal(err)
			}
			for s := range coherenceSessions {
				session := coherenceSession(s)
				w, err := readWindow(context.Background(), b, session, coherenceMaxTurns)
				if err != nil {
					t.Fatalf("LoadWindow(%q): %v", session, err)
				}
				got := windowState{count: w.TurnCount}
				for _, turn := range w.Turns {
					got.ids = append(got.ids, turn.ID)
				}
				if want := r.model.state(session); !got.equal(want) {
					t.Errorf("session %q in the store: %s; the test's model says %s", session, got, want)
				}
			}
		})

		// The same requests with -stale 1h, a cache that is not coherent
		// across processes: the check must catch it, else a coherent result
		// above would mean nothing.
		t.Run("non-coherent control", func(t *testing.T) {
			r := runBalanced(t, bin, d.URL(t), seed, "-stale", "1h")
			t.Logf("%s", r)
			if len(r.wrong) == 0 {
				t.Errorf("with -stale 1h no stale window was detected in %d loads: the check cannot fail", r.loads)
			} else {
				t.Logf("detected as expected, e.g. %s", r.wrong[0])
			}
		})

		t.Run("stale reads", func(t *testing.T) { testStaleReads(t, bin, d.URL(t), seed) })
		t.Run("staleness", func(t *testing.T) { testStaleness(t, bin, d.URL(t), seed) })
	})
}

// balancedResult is what runBalanced saw.
type balancedResult struct {
	model                       *coherenceModel
	steps, saves, loads, clears int
	crossLoads                  int      // loads of a session the other server wrote since this server last touched it
	wrong                       []string // loads whose window was not the truth
	stats                       [2]memory.CacheStats
	elapsed                     time.Duration
}

func (r balancedResult) String() string {
	return fmt.Sprintf("%d requests in %v: %d saves, %d loads (%d after the other server's writes), %d clears; %d wrong windows; stats A %+v, B %+v",
		r.steps, r.elapsed.Round(time.Millisecond), r.saves, r.loads, r.crossLoads, r.clears, len(r.wrong), r.stats[0], r.stats[1])
}

// runBalanced starts two app servers on url with args and sends them 600
// requests drawn from seed, each to a random server: 45% saves, 50% loads
// and 5% clears of random sessions among coherenceSessions. Every load is
// compared with the model of what was acknowledged.
func runBalanced(t *testing.T, bin, url string, seed uint64, args ...string) balancedResult {
	const steps = 600
	servers := startAppServers(t, bin, url, args...)
	rng := rand.New(rand.NewPCG(seed, 1))
	r := balancedResult{model: newCoherenceModel(coherenceMaxTurns), steps: steps}
	version := map[string]int{}       // session → writes acknowledged
	seen := [2]map[string]int{{}, {}} // server → session → version at its last request
	start := time.Now()
	for step := range steps {
		x, session := rng.IntN(2), coherenceSession(rng.IntN(coherenceSessions))
		switch op := rng.IntN(100); {
		case op < 5:
			servers[x].do(t, "clear "+session)
			r.model.clear(session)
			version[session]++
			r.clears++
		case op < 50:
			id := fmt.Sprintf("t%04d", step)
			servers[x].do(t, fmt.Sprintf("save %s %s user text of %s", session, id, id))
			r.model.save(session, id)
			version[session]++
			r.saves++
		default:
			got := servers[x].do(t, "load "+session).state()
			r.loads++
			if v, ok := seen[x][session]; ok && v != version[session] {
				r.crossLoads++
			}
			if want := r.model.state(session); !got.equal(want) {
				r.wrong = append(r.wrong, fmt.Sprintf("step %d, server %s, session %q: got %s; want %s", step, servers[x].name, session, got, want))
			}
		}
		seen[x][session] = version[session]
	}
	r.elapsed = time.Since(start)
	for i, s := range servers {
		r.stats[i] = *s.do(t, "stats").Stats
	}
	return r
}

// testStaleReads runs two servers with -stale 1h, each holding a cached
// window of every session, and alternates writes between them. After each
// write on server X, X's load must be the truth (it sees its own writes),
// and the other server's load must be the truth at some point in history:
// a window that matches no past state means a save appended onto a stale
// window.
func testStaleReads(t *testing.T, bin, url string, seed uint64) {
	const writes, sessions = 200, 3
	servers := startAppServers(t, bin, url, "-stale", "1h")
	rng := rand.New(rand.NewPCG(seed, 2))
	model := newCoherenceModel(coherenceMaxTurns)
	history := map[string]map[string]bool{} // session → every state it was in
	record := func(session string) {
		if history[session] == nil {
			history[session] = map[string]bool{}
		}
		history[session][model.state(session).String()] = true
	}
	for s := range sessions {
		session := coherenceSession(s)
		record(session) // the empty session
		for _, srv := range servers {
			srv.do(t, "load "+session)
		}
	}

	var ownWrong, neverExisted, staleServed, writesOnStale int
	lastWriter := map[string]int{}
	for i := range writes {
		x, session := i%2, coherenceSession(rng.IntN(sessions))
		if w, ok := lastWriter[session]; ok && w != x {
			writesOnStale++ // x's cached window misses the other server's write
		}
		lastWriter[session] = x
		if rng.IntN(100) < 5 {
			servers[x].do(t, "clear "+session)
			model.clear(session)
		} else {
			id := fmt.Sprintf("s%04d", i)
			servers[x].do(t, fmt.Sprintf("save %s %s user text of %s", session, id, id))
			model.save(session, id)
		}
		record(session)

		want := model.state(session)
		if got := servers[x].do(t, "load "+session).state(); !got.equal(want) {
			if ownWrong++; ownWrong <= 10 {
				t.Errorf("write %d: server %s does not see its own write to %q: got %s; want %s", i, servers[x].name, session, got, want)
			}
		}
		y := 1 - x
		got := servers[y].do(t, "load "+session).state()
		switch {
		case !history[session][got.String()]:
			if neverExisted++; neverExisted <= 10 {
				t.Errorf("write %d: server %s shows %q in a state that never existed: %s (now %s)", i, servers[y].name, session, got, want)
			}
		case !got.equal(want):
			staleServed++
		}
	}
	stats := [2]memory.CacheStats{*servers[0].do(t, "stats").Stats, *servers[1].do(t, "stats").Stats}
	t.Logf("%d writes alternating between 2 servers, %d onto a window the writer held stale: %d own loads not the truth, %d windows matching no past state (appends onto a stale window), %d stale windows served; stats A %+v, B %+v",
		writes, writesOnStale, ownWrong, neverExisted, staleServed, stats[0], stats[1])
	if ownWrong > 0 || neverExisted > 0 {
		t.Errorf("got %d own writes unseen and %d windows of no past state; want 0 and 0", ownWrong, neverExisted)
	}
	// Without stale windows served and stale windows written onto, the
	// run would not exercise what it checks.
	if staleServed == 0 || writesOnStale == 0 {
		t.Errorf("%d stale windows served, %d writes onto a stale window: the run proved nothing", staleServed, writesOnStale)
	}
}

// testStaleness measures, with -stale staleBound, how long after server A
// acknowledged a turn server B's loads go on without it. Each sample waits
// a random time up to the bound between B's load and A's save, so the
// delays spread over [0, bound]. The clock is the wall clock: what is
// measured is three processes' real timing.
func testStaleness(t *testing.T, bin, url string, seed uint64) {
	const samples, poll, session = 30, 2 * time.Millisecond, "lag"
	servers := startAppServers(t, bin, url, "-stale", staleBound.String())
	a, b := servers[0], servers[1]
	rng := rand.New(rand.NewPCG(seed, 3))
	var delays []time.Duration
	staleFirst := 0 // samples whose first load of B missed the turn
	for i := range samples {
		b.do(t, "load "+session)
		time.Sleep(time.Duration(rng.Int64N(int64(staleBound))))
		id := fmt.Sprintf("l%04d", i)
		a.do(t, fmt.Sprintf("save %s %s user text of %s", session, id, id))
		t0 := time.Now()
		for polls := 0; ; polls++ {
			if got := b.do(t, "load "+session).state(); slices.Contains(got.ids, id) {
				delays = append(delays, time.Since(t0))
				if polls > 0 {
					staleFirst++
				}
				break
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("sample %d: server B has not shown turn %s 5s after it was acknowledged", i, id)
			}
			time.Sleep(poll)
		}
	}
	slices.Sort(delays)
	p50, p99 := percentile(delays, 0.50), percentile(delays, 0.99)
	t.Logf("staleness with -stale %v over %d samples: p50 %v, p99 %v, max %v; %d samples stale at the first load",
		staleBound, samples, p50.Round(time.Microsecond), p99.Round(time.Microsecond), delays[len(delays)-1].Round(time.Microsecond), staleFirst)
	// Of 30 samples the p99 is the largest, so one stall of one of the
	// three processes (a collection under -race, the OS on two loaded
	// cores) decided it: the bound holds for all samples but the largest,
	// and the largest is held to twice it. A bound not kept shows in many
	// samples.
	limit := staleBound + stalenessMargin
	if second := delays[len(delays)-2]; second > limit {
		t.Errorf("staleness of the second-largest of %d samples %v; want at most %v (the bound %v plus %v)", samples, second, limit, staleBound, stalenessMargin)
	}
	if most := delays[len(delays)-1]; most > 2*limit {
		t.Errorf("largest staleness %v; want at most %v (twice the bound %v plus %v)", most, 2*limit, staleBound, stalenessMargin)
	}
	if staleFirst == 0 {
		t.Errorf("no sample was ever stale: WithStaleReads(%v) served no stale window", staleBound)
	}
}

// percentile returns the p-th percentile of sorted, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func coherenceSession(i int) string { return fmt.Sprintf("session-%d", i) }

// A windowState is what a load shows: the turn IDs of the window, oldest
// first, and the session's turn count.
type windowState struct {
	ids   []string
	count int
}

func (w windowState) equal(o windowState) bool {
	return w.count == o.count && slices.Equal(w.ids, o.ids)
}

func (w windowState) String() string {
	return fmt.Sprintf("%d turns, window [%s]", w.count, strings.Join(w.ids, " "))
}

// coherenceModel is the truth the servers are checked against: the turn
// IDs acknowledged per session since its last acknowledged clear.
type coherenceModel struct {
	maxTurns int
	turns    map[string][]string
}

func newCoherenceModel(maxTurns int) *coherenceModel {
	return &coherenceModel{maxTurns: maxTurns, turns: map[string][]string{}}
}

func (m *coherenceModel) save(session, id string) { m.turns[session] = append(m.turns[session], id) }
func (m *coherenceModel) clear(session string)    { delete(m.turns, session) }

func (m *coherenceModel) state(session string) windowState {
	ids := m.turns[session]
	return windowState{ids: slices.Clone(ids[max(len(ids)-m.maxTurns, 0):]), count: len(ids)}
}

// appReply is one answer line of the app server.
type appReply struct {
	OK        bool               `json:"ok"`
	Error     string             `json:"error"`
	Turns     []string           `json:"turns"`
	TurnCount int                `json:"turn_count"`
	Stats     *memory.CacheStats `json:"stats"`
}

func (r appReply) state() windowState { return windowState{ids: r.Turns, count: r.TurnCount} }

// appServerTimeout bounds one app server process; it is killed then.
const appServerTimeout = 2 * time.Minute

// An appServer is a running app server program.
type appServer struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    chan string // answer lines; closed when stdout ends
	stderr lockedBuffer
}

// startAppServers starts servers A and B on url with args, ready to serve,
// and stops them at cleanup.
func startAppServers(t *testing.T, bin, url string, args ...string) [2]*appServer {
	t.Helper()
	args = append([]string{"-db", url, "-max-turns", strconv.Itoa(coherenceMaxTurns)}, args...)
	return [2]*appServer{startAppServer(t, bin, "A", args...), startAppServer(t, bin, "B", args...)}
}

func startAppServer(t *testing.T, bin, name string, args ...string) *appServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), appServerTimeout)
	s := &appServer{name: name, cmd: exec.CommandContext(ctx, bin, args...), out: make(chan string, 1)}
	s.cmd.Stderr = &s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start app server %s: %v", name, err)
	}
	go func() {
		defer close(s.out)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			s.out <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		s.stdin.Close() // the server exits at the end of stdin
		for range s.out {
		}
		if err := s.cmd.Wait(); err != nil {
			t.Errorf("app server %s: %v; stderr %q", name, err, s.stderr.String())
		}
		cancel()
	})
	s.answer(t, "start")
	return s
}

// do sends one command and returns the answer, failing the test on an
// error answer or none within 30s.
func (s *appServer) do(t testing.TB, command string) appReply {
	t.Helper()
	if _, err := io.WriteString(s.stdin, command+"\n"); err != nil {
		t.Fatalf("app server %s: send %q: %v; stderr %q", s.name, command, err, s.stderr.String())
	}
	return s.answer(t, command)
}

func (s *appServer) answer(t testing.TB, command string) appReply {
	t.Helper()
	select {
	case line, ok := <-s.out:
		if !ok {
			t.Fatalf("app server %s ended without answering %q; stderr %q", s.name, command, s.stderr.String())
		}
		var r appReply
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("app server %s: %q: answer %q: %v", s.name, command, line, err)
		}
		if !r.OK {
			t.Fatalf("app server %s: %q: %s", s.name, command, r.Error)
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("app server %s: no answer to %q within 30s; stderr %q", s.name, command, s.stderr.String())
	}
	return appReply{} // not reached: Fatalf ends the test's goroutine
}

// lockedBuffer is a bytes.Buffer safe to read while a process writes it.
type lockedBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// appServerBinary builds tests/internal/appserver into a directory of the
// test's own. Like saverBinary it builds without -race: what races here is
// between processes, which the detector cannot see.
func appServerBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(build.Default.GOROOT, "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "appserver")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goCmd, "build", "-o", bin, "./internal/appserver").CombinedOutput(); err != nil {
		t.Fatalf("build the app server: %v\n%s", err, out)
	}
	return bin
}
