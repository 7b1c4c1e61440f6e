package main

// The browser test drives a real headless Chromium with chromedp: the
// DevTools protocol spoken from Go, in-process, so the test runs under
// plain `go test` with no Node.js, no WebDriver binary and no test runner
// of another language. It needs Debian's chromium; without it the test
// skips, unless TURNKEEP_REQUIRE_CHROMIUM=1 (as in CI) makes it fail.

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// EnvRequireChromium names the variable that makes a missing Chromium a
// failure rather than a skip.
const EnvRequireChromium = "TURNKEEP_REQUIRE_CHROMIUM"

// chromium returns the path of the chromium binary, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if os.Getenv(EnvRequireChromium) == "1" {
		t.Fatalf("chromium not found and %s=1: install it (apt-get install chromium)", EnvRequireChromium)
	}
	t.Skipf("browser test skipped: chromium not found (apt-get install chromium; %s=1 makes this a failure)", EnvRequireChromium)
	return ""
}

// browser starts a headless Chromium with a fresh profile, and returns a
// tab's context. The browser is stopped (and waited for, so that its
// profile directory can be removed) at the test's end.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], // headless, no first-run dialogs
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium's sandbox cannot start as root, nor in most containers;
		// the browser loads only the test's own page.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1100, 700),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
	})
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return ctx
}

// TestBrowser opens the page, sends messages, watches the answers stream
// in, reloads, restarts the server, and finds the conversation each time.
func TestBrowser(t *testing.T) {
	ctx := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	dbURL := dbtest.SQLiteURL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String() // the restarted server listens here too: same origin, same page state
	agent := offlineAgent{delay: 15 * time.Millisecond}
	first := newInstanceOn(t, ln, dbURL, agent)
	first.srv.flushEvery = 50 * time.Millisecond

	texts := func(sel string) []string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll(`+strconv.Quote(sel)+`)].map(e => e.textContent)`))
		require.NoError(t, err)
		return v
	}
	// answers returns the text of the shown answers once the page shows n
	// complete turns.
	answers := func(n int) []string {
		t.Helper()
		sel := `#messages .turn[data-complete="true"]:nth-child(` + itoa(n) + `) .assistant`
		require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))), "waiting for %d answered turns", n)
		return texts("#messages .turn .assistant")
	}
	say := func(text string) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx,
			chromedp.WaitEnabled(chromedp.CSS("#send")),
			chromedp.SendKeys(chromedp.CSS("#input"), text),
			chromedp.Click(chromedp.CSS("#send")),
		))
	}

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate("http://"+addr+"/?user=ada"),
		chromedp.WaitVisible(chromedp.CSS("#input")),
		chromedp.WaitVisible(chromedp.CSS("#messages .note")), // page.js has run and shown the empty chat
	))
	// The page keeps to its Content-Security-Policy: its stylesheet applies,
	// and an inline script, which the policy forbids, does not run. Every
	// violation from here on is counted.
	probe, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.violations = [];
		document.addEventListener("securitypolicyviolation", (e) => window.violations.push(e.violatedDirective));
		const probe = document.createElement("script");
		probe.textContent = "window.inlineRan = true";
		document.body.append(probe);
		[getComputedStyle(document.querySelector("header")).backgroundColor, String(window.inlineRan === true)]`))
	require.NoError(t, err)
	assert.Equal(t, []string{"rgb(31, 58, 95)", "false"}, probe, "the stylesheet applies; an inline script is blocked")

	// Count the changes to the conversation, to see the answer arrive in
	// pieces rather than whole.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[int](`window.mutations = 0; new MutationObserver(() => window.mutations++)
		.observe(document.querySelector("#messages"), {subtree: true, childList: true, characterData: true}); 0`))
	require.NoError(t, err)
	say("my name is Ada")
	got := answers(1)
	assert.Equal(t, []string{"Nice to meet you, Ada. I will remember your name, even across restarts."}, got)
	mutations, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.mutations`))
	require.NoError(t, err)
	assert.Greater(t, mutations, 5, "the answer was shown as it streamed")

	say("what is my name?")
	assert.Equal(t, "Your name is Ada.", answers(2)[1])
	assert.Equal(t, []string{"my name is Ada"}, texts("#sessions li.current span"), "the session, named after its first message")

	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.violations`))
	require.NoError(t, err)
	require.Len(t, violations, 1, "only the probe broke the policy: %v", violations)
	assert.Contains(t, violations[0], "script-src")

	// A reload shows the history.
	require.NoError(t, chromedp.Do(ctx, chromedp.Reload()))
	assert.Equal(t, []string{got[0], "Your name is Ada."}, answers(2))

	// So does a reload after the server restarted: a new process, with
	// nothing cached, on the same database and address.
	first.stop()
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err, "listen again on %s", addr)
	newInstanceOn(t, ln, dbURL, agent)
	require.NoError(t, chromedp.Do(ctx, chromedp.Reload()))
	assert.Equal(t, []string{got[0], "Your name is Ada."}, answers(2))
	assert.Equal(t, []string{"my name is Ada", "what is my name?"}, texts("#messages .turn .user"))
	say("and after a restart?")
	assert.True(t, strings.HasPrefix(answers(3)[2], `You said "and after a restart?". I remember 2 earlier turns`))

	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	shot := filepath.Join(t.TempDir(), "browser.png")
	require.NoError(t, os.WriteFile(shot, png, 0o644))
	t.Logf("screenshot: %s (removed with the test's temporary directory)", shot)
	kept := filepath.Join(os.TempDir(), "turnkeep-browser-"+time.Now().Format("20060102-150405")+".png")
	require.NoError(t, os.WriteFile(kept, png, 0o644))
	t.Logf("screenshot kept: %s", kept)
}
