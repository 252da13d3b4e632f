package schema

import (
	"errors"
	"math"
)

// Dates and times arrive in ISO form (DateStyle 'ISO, YMD', TimeZone UTC):
//
//	date         2024-01-02, 10000-01-01, 0044-03-15 BC, infinity, -infinity
//	time         03:04:05, 03:04:05.123456, 24:00:00
//	timestamp    2024-01-02 03:04:05.123456 [BC]
//	timestamptz  2024-01-02 03:04:05.123456+00 [BC], offsets ±HH[:MM[:SS]]
//
// Calendar arithmetic is proleptic Gregorian, as PostgreSQL's; year 1 BC is
// astronomical year 0.

const (
	usPerSecond = 1_000_000
	usPerDay    = 86_400 * usPerSecond
	// Bounds keeping days*usPerDay, plus a day and an offset, inside int64.
	maxDaysForMicros = math.MaxInt64/usPerDay - 2
)

var errTimeRange = errors.New("out of the range of a 64-bit microsecond timestamp")

// daysFromCivil returns the days since 1970-01-01 of an astronomical
// proleptic Gregorian date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func isLeap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(y, m int64) int64 {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// digits reads exactly n decimal digits at b[i:].
func digits(b []byte, i, n int) (int64, bool) {
	if i+n > len(b) {
		return 0, false
	}
	var v int64
	for _, c := range b[i : i+n] {
		c -= '0'
		if c > 9 {
			return 0, false
		}
		v = v*10 + int64(c)
	}
	return v, true
}

// parseDatePart reads YYYY[Y...]-MM-DD at the start of b and returns the
// astronomical year, month, day and the index after it. BC is applied by the
// caller once it has seen the suffix.
func parseDatePart(b []byte) (y, m, d int64, i int, ok bool) {
	for i < len(b) && b[i]-'0' <= 9 {
		if i >= 9 {
			return 0, 0, 0, 0, false
		}
		y = y*10 + int64(b[i]-'0')
		i++
	}
	if i < 4 || i >= len(b) || b[i] != '-' {
		return 0, 0, 0, 0, false
	}
	if m, ok = digits(b, i+1, 2); !ok || i+3 >= len(b) || b[i+3] != '-' {
		return 0, 0, 0, 0, false
	}
	if d, ok = digits(b, i+4, 2); !ok {
		return 0, 0, 0, 0, false
	}
	return y, m, d, i + 6, true
}

// cutBC removes a trailing " BC" and reports whether it was there.
func cutBC(b []byte) ([]byte, bool) {
	if n := len(b); n >= 3 && string(b[n-3:]) == " BC" {
		return b[:n-3], true
	}
	return b, false
}

// civilDays validates a date and converts it to days since the epoch.
func civilDays(y, m, d int64, bc bool) (int64, bool) {
	if bc {
		if y == 0 {
			return 0, false
		}
		y = 1 - y
	} else if y == 0 {
		return 0, false
	}
	if m < 1 || m > 12 || d < 1 || d > daysIn(y, m) {
		return 0, false
	}
	return daysFromCivil(y, m, d), true
}

// parseDate returns days since 1970-01-01. 'infinity' and '-infinity' map to
// math.MaxInt32 and math.MinInt32.
func parseDate(text []byte) (int32, error) {
	switch string(text) {
	case "infinity":
		return math.MaxInt32, nil
	case "-infinity":
		return math.MinInt32, nil
	}
	b, bc := cutBC(text)
	y, m, d, i, ok := parseDatePart(b)
	if !ok || i != len(b) {
		return 0, errSyntax
	}
	days, ok := civilDays(y, m, d, bc)
	if !ok {
		return 0, errSyntax
	}
	if days > math.MaxInt32 || days < math.MinInt32 {
		return 0, errRange
	}
	return int32(days), nil
}

// parseClock reads HH:MM:SS[.f{1,6}] at b[i:] and returns microseconds since
// midnight and the index after it. 24:00:00 is allowed, as in PostgreSQL.
func parseClock(b []byte, i int) (int64, int, bool) {
	h, ok1 := digits(b, i, 2)
	m, ok2 := digits(b, i+3, 2)
	s, ok3 := digits(b, i+6, 2)
	if !ok1 || !ok2 || !ok3 || b[i+2] != ':' || b[i+5] != ':' {
		return 0, 0, false
	}
	if m > 59 || s > 60 || h > 24 || (h == 24 && (m != 0 || s != 0)) {
		return 0, 0, false
	}
	us := ((h*60+m)*60 + s) * usPerSecond
	i += 8
	if i < len(b) && b[i] == '.' {
		i++
		n := 0
		var f int64
		for i < len(b) && b[i]-'0' <= 9 {
			if n == 6 {
				return 0, 0, false
			}
			f = f*10 + int64(b[i]-'0')
			i++
			n++
		}
		if n == 0 {
			return 0, 0, false
		}
		for ; n < 6; n++ {
			f *= 10
		}
		if h == 24 && f != 0 {
			return 0, 0, false
		}
		us += f
	}
	return us, i, true
}

// parseTime returns microseconds since midnight.
func parseTime(text []byte) (int64, error) {
	us, i, ok := parseClock(text, 0)
	if !ok || i != len(text) {
		return 0, errSyntax
	}
	return us, nil
}

// parseTimestamp returns microseconds since 1970-01-01 00:00:00 of a
// timestamp (withTZ false) or timestamptz (withTZ true, the offset applied).
// 'infinity' and '-infinity' map to math.MaxInt64 and math.MinInt64.
func parseTimestamp(text []byte, withTZ bool) (int64, error) {
	switch string(text) {
	case "infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	}
	b, bc := cutBC(text)
	y, m, d, i, ok := parseDatePart(b)
	if !ok || i >= len(b) || b[i] != ' ' {
		return 0, errSyntax
	}
	tod, i, ok := parseClock(b, i+1)
	if !ok {
		return 0, errSyntax
	}
	var off int64 // seconds east of UTC
	if withTZ {
		if i >= len(b) || (b[i] != '+' && b[i] != '-') {
			return 0, errSyntax
		}
		sign := int64(1)
		if b[i] == '-' {
			sign = -1
		}
		oh, ok := digits(b, i+1, 2)
		if !ok {
			return 0, errSyntax
		}
		off = oh * 3600
		i += 3
		for k := 0; k < 2 && i < len(b) && b[i] == ':'; k++ {
			v, ok := digits(b, i+1, 2)
			if !ok || v > 59 {
				return 0, errSyntax
			}
			if k == 0 {
				off += v * 60
			} else {
				off += v
			}
			i += 3
		}
		off *= sign
	}
	if i != len(b) {
		return 0, errSyntax
	}
	days, ok := civilDays(y, m, d, bc)
	if !ok {
		return 0, errSyntax
	}
	if days > maxDaysForMicros || days < -maxDaysForMicros {
		return 0, errTimeRange
	}
	us := days*usPerDay + tod - off*usPerSecond
	// |days*usPerDay| < MaxInt64 - 2 days, tod and off are below 2 days: no overflow.
	return us, nil
}

func convDate(dst, text []byte) ([]byte, error) {
	v, err := parseDate(text)
	return appendInt(dst, v), err
}

func convTime(dst, text []byte) ([]byte, error) {
	v, err := parseTime(text)
	return appendLong(dst, v), err
}

func convTimestamp(dst, text []byte) ([]byte, error) {
	v, err := parseTimestamp(text, false)
	return appendLong(dst, v), err
}

func convTimestamptz(dst, text []byte) ([]byte, error) {
	v, err := parseTimestamp(text, true)
	return appendLong(dst, v), err
}
