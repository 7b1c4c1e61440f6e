package main

import (
	"context"
	"os"
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

// TestBrowserVersions edits a sent message and regenerates an answer in
// the page, and moves between the versions with "< 1/2 >", checking what
// the page shows at each step (the DOM, not timings).
func TestBrowserVersions(t *testing.T) {
	ctx := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	in := newInstance(t, dbtest.SQLiteURL(t), offlineAgent{delay: 5 * time.Millisecond})

	// until waits for a JavaScript condition on the page.
	until := func(cond string) {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(20*time.Second)))
		require.NoError(t, err, "waiting for %s", cond)
	}
	texts := func(sel string) []string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll(`+strconv.Quote(sel)+`)].map(e => e.textContent)`))
		require.NoError(t, err)
		return v
	}
	// shown waits until the page shows n turns, all answered and, the
	// history loaded, with their buttons; it returns the answers.
	shown := func(n int) []string {
		t.Helper()
		until(`!document.querySelector("#send").disabled && document.querySelectorAll("#messages .turn").length === ` + itoa(n) +
			` && document.querySelectorAll('#messages .turn[data-complete="true"] .edit').length === ` + itoa(n))
		return texts("#messages .turn .assistant")
	}
	turn := func(n int) string { return `#messages .turn:nth-child(` + itoa(n) + `) ` }
	// count waits until turn n shows the version count want ("2/3").
	count := func(n int, want string) {
		t.Helper()
		until(`document.querySelector(` + strconv.Quote(turn(n)+`.versions .count`) + `)?.textContent === ` + strconv.Quote(want) +
			` && !document.querySelector("#send").disabled`)
	}
	click := func(sel string) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))), "click %s", sel)
	}
	say := func(text string) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx,
			chromedp.WaitEnabled(chromedp.CSS("#send")),
			chromedp.SendKeys(chromedp.CSS("#input"), text),
			chromedp.Click(chromedp.CSS("#send")),
		))
	}
	fragment := func() string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`decodeURIComponent(location.hash.slice(1))`))
		require.NoError(t, err)
		return v
	}

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(in.ts.URL+"/?user=ada"),
		chromedp.WaitVisible(chromedp.CSS("#messages .note")),
	))
	say("my name is Ada")
	shown(1)
	say("hello there")
	original := shown(2)
	require.True(t, strings.HasPrefix(original[1], `You said "hello there".`), original[1])
	root := fragment()
	assert.Empty(t, texts(turn(2)+".versions"), "one version yet: no control")

	// Edit the second message.
	click(turn(2) + ".edit")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(turn(2)+".editor textarea")),
		chromedp.SetValue(chromedp.CSS(turn(2)+".editor textarea"), "what is my name?"),
	))
	click(turn(2) + ".editor .save")
	count(2, "2/2")
	edited := shown(2)
	assert.Equal(t, []string{original[0], "Your name is Ada."}, edited)
	assert.Equal(t, []string{"my name is Ada", "what is my name?"}, texts("#messages .turn .user"))
	fork := fragment()
	assert.NotEqual(t, root, fork, "the page shows the fork")
	assert.Equal(t, []string{"my name is Ada"}, texts("#sessions li span"), "a version is no chat of its own")
	assert.Equal(t, []string{"my name is Ada"}, texts("#sessions li.current span"))

	// Back to the first version, and forth again.
	click(turn(2) + ".versions .prev")
	count(2, "1/2")
	assert.Equal(t, original, shown(2))
	assert.Equal(t, []string{"my name is Ada", "hello there"}, texts("#messages .turn .user"))
	assert.Equal(t, root, fragment())
	click(turn(2) + ".versions .next")
	count(2, "2/2")
	assert.Equal(t, edited, shown(2))
	assert.Equal(t, fork, fragment())

	// Regenerate the answer: a third version, shown.
	click(turn(2) + ".regenerate")
	count(2, "3/3")
	assert.Equal(t, edited, shown(2), "the offline agent answers the same again")
	third := fragment()
	assert.NotContains(t, []string{root, fork}, third)
	click(turn(2) + ".versions .prev")
	count(2, "2/3")
	assert.Equal(t, fork, fragment())

	// The versions survive a reload: they are read from the memory.
	require.NoError(t, chromedp.Do(ctx, chromedp.Reload()))
	count(2, "2/3")
	assert.Equal(t, edited, shown(2))

	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	shot := filepath.Join(t.TempDir(), "browser-versions.png")
	require.NoError(t, os.WriteFile(shot, png, 0o644))
	t.Logf("screenshot: %s (removed with the test's temporary directory)", shot)
	kept := filepath.Join(os.TempDir(), "turnkeep-browser-versions-"+time.Now().Format("20060102-150405")+".png")
	require.NoError(t, os.WriteFile(kept, png, 0o644))
	t.Logf("screenshot kept: %s", kept)

	// Editing the first message starts a new chat: there is no turn
	// before it to fork at.
	click(turn(1) + ".edit")
	require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(turn(1)+".editor textarea"), "my name is Eve")))
	click(turn(1) + ".editor .save")
	until(`document.querySelectorAll("#sessions li").length === 2`)
	assert.Equal(t, []string{"Nice to meet you, Eve. I will remember your name, even across restarts."}, shown(1))
	assert.Empty(t, texts(turn(1)+".versions"))
	assert.Equal(t, []string{"my name is Eve"}, texts("#sessions li.current span"))
	assert.NotContains(t, []string{root, fork, third}, fragment())
}
