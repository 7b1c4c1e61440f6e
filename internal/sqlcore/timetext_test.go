package sqlcore_test

import (
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// FormatSQLiteTime and ParseSQLiteTime agree with time.Format and
// time.Parse on the layout.
func TestSQLiteTimeText(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(1999, 12, 31, 0, 0, 0, 1, time.FixedZone("x", 5*3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
	}
	for _, tm := range times {
		want := tm.UTC().Format(sqlcore.SQLiteTimeLayout)
		if got := sqlcore.FormatSQLiteTime(tm); got != want {
			t.Errorf("FormatSQLiteTime(%v) = %q; want %q", tm, got, want)
		}
		checkParse(t, want)
	}
	for _, s := range []string{
		"2023-02-29 00:00:00.000000000+00:00", "2024-13-01 00:00:00.000000000+00:00",
		"2024-01-01 24:00:00.000000000+00:00", "2024-01-01 00:60:00.000000000+00:00",
		"2024-01-01 00:00:60.000000000+00:00", "2024-01-00 00:00:00.000000000+00:00",
		"2024-01-01 00:00:00.000000000+01:00", "2024-01-01T00:00:00.000000000+00:00",
		"2024-01-01 00:00:00.00000000a+00:00", "+024-01-01 00:00:00.000000000+00:00",
		"2024-04-31 00:00:00.000000000+00:00", "2100-02-29 00:00:00.000000000+00:00",
		"2000-02-29 00:00:00.000000000+00:00", "", "2024-01-01",
	} {
		checkParse(t, s)
	}
}

func FuzzParseSQLiteTime(f *testing.F) {
	f.Add("2024-02-29 23:59:59.999999999+00:00")
	f.Add("2024-01-01 00:00:00.000000000+00:00")
	f.Fuzz(checkParse)
}

// checkParse checks that ParseSQLiteTime reads s as time.Parse does, or
// declines it (time.Parse, which callers fall back to, is more lenient),
// but never declines the text FormatSQLiteTime writes.
func checkParse(t *testing.T, s string) {
	got, ok := sqlcore.ParseSQLiteTime(s)
	want, err := time.Parse(sqlcore.SQLiteTimeLayout, s)
	if ok && (err != nil || !got.Equal(want) || got.Location() != time.UTC) {
		t.Errorf("ParseSQLiteTime(%q) = %v; time.Parse gives %v, %v", s, got, want, err)
	}
	if !ok && err == nil && sqlcore.FormatSQLiteTime(want) == s && want.Year() <= 9999 {
		t.Errorf("ParseSQLiteTime(%q) declined the text FormatSQLiteTime gives for %v", s, want)
	}
}
