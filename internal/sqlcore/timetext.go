package sqlcore

import "time"

// FormatSQLiteTime returns t in UTC as SQLiteTimeLayout text, as
// t.UTC().Format(SQLiteTimeLayout) does, without interpreting the layout:
// times are bound on every write and read back on every load.
func FormatSQLiteTime(t time.Time) string {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Format(SQLiteTimeLayout) // wider than the fixed width
	}
	hour, minute, sec := t.Clock()
	var b [len(SQLiteTimeLayout)]byte
	putDigits(b[0:4], year)
	b[4] = '-'
	putDigits(b[5:7], int(month))
	b[7] = '-'
	putDigits(b[8:10], day)
	b[10] = ' '
	putDigits(b[11:13], hour)
	b[13] = ':'
	putDigits(b[14:16], minute)
	b[16] = ':'
	putDigits(b[17:19], sec)
	b[19] = '.'
	putDigits(b[20:29], t.Nanosecond())
	copy(b[29:], "+00:00")
	return string(b[:])
}

// ParseSQLiteTime parses text in SQLiteTimeLayout, as
// time.Parse(SQLiteTimeLayout, s) does, returning a UTC time. It reports
// false for any other text, which time.Parse may still read (a year
// outside 0000-9999) or reject.
func ParseSQLiteTime(s string) (time.Time, bool) {
	if len(s) != len(SQLiteTimeLayout) || s[4] != '-' || s[7] != '-' || s[10] != ' ' ||
		s[13] != ':' || s[16] != ':' || s[19] != '.' || s[29:] != "+00:00" {
		return time.Time{}, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	nsec, ok7 := digits(s[20:29])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false // out of range: time.Parse says why
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// putDigits writes v, zero-padded, into b.
func putDigits(b []byte, v int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// digits parses s, ASCII digits only.
func digits(s string) (int, bool) {
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int((m-1)%7%2)
}
