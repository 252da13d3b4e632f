package schema

import (
	"math"
	"math/bits"
)

// IntervalFullName is the Avro full name of the record interval columns are
// written as.
const IntervalFullName = "io.pgkafka.Interval"

// intervalSchema keeps PostgreSQL's three interval fields apart, as the
// server stores them: a month and a day have no fixed length.
const intervalSchema = `{"type":"record","name":"Interval","namespace":"io.pgkafka","fields":[` +
	`{"name":"months","type":"int"},` +
	`{"name":"days","type":"int"},` +
	`{"name":"micros","type":"long"}` +
	`],"connect.name":"io.pgkafka.Interval"}`

// interval is PostgreSQL's interval: months, days and microseconds.
type interval struct {
	months, days int32
	micros       int64
}

// Intervals arrive in IntervalStyle iso_8601, each part with its own sign:
//
//	P1Y2M3DT4H5M6.789S   P-1Y-2M3DT-4H-5M-6.789S   PT0S   PT-0.5S
//
// Years and months make the months field, days the days field, hours,
// minutes and seconds the microseconds. PostgreSQL 17's 'infinity' and
// '-infinity' are written as every field at its maximum or minimum, as the
// server stores them.
func parseInterval(text []byte) (interval, error) {
	switch string(text) {
	case "infinity":
		return interval{math.MaxInt32, math.MaxInt32, math.MaxInt64}, nil
	case "-infinity":
		return interval{math.MinInt32, math.MinInt32, math.MinInt64}, nil
	}
	if len(text) < 3 || text[0] != 'P' {
		return interval{}, errSyntax
	}
	var months, days, micros int64
	// Units in the order they may appear; each at most once.
	const units = "YMDHMS"
	next := 0 // index in units of the next allowed unit
	timePart := false
	parts := 0
	for i := 1; i < len(text); {
		if text[i] == 'T' {
			if timePart || i+1 == len(text) {
				return interval{}, errSyntax
			}
			timePart, next = true, 3
			i++
			continue
		}
		neg := false
		if text[i] == '-' || text[i] == '+' {
			neg = text[i] == '-'
			i++
		}
		start := i
		var mag uint64
		for i < len(text) && text[i]-'0' <= 9 {
			if mag > (math.MaxInt64-9)/10 {
				return interval{}, errRange
			}
			mag = mag*10 + uint64(text[i]-'0')
			i++
		}
		if i == start {
			return interval{}, errSyntax
		}
		var frac uint64 // microseconds, seconds only
		hasFrac := i < len(text) && text[i] == '.'
		if hasFrac {
			i++
			n := 0
			for i < len(text) && text[i]-'0' <= 9 {
				if n == 6 {
					return interval{}, errSyntax
				}
				frac = frac*10 + uint64(text[i]-'0')
				i++
				n++
			}
			if n == 0 {
				return interval{}, errSyntax
			}
			for ; n < 6; n++ {
				frac *= 10
			}
		}
		if i == len(text) {
			return interval{}, errSyntax
		}
		u := text[i]
		i++
		k := next
		for k < len(units) && units[k] != u {
			k++
		}
		if k == len(units) || (k < 3) == timePart || hasFrac && k != 5 {
			return interval{}, errSyntax
		}
		next = k + 1
		parts++
		v, ok := signed(mag, neg)
		if !ok {
			return interval{}, errRange
		}
		switch k {
		case 0, 1: // years, months
			if v > math.MaxInt32 || v < math.MinInt32 {
				return interval{}, errRange
			}
			if k == 0 {
				v *= 12
			}
			months += v
		case 2:
			days = v
		case 3, 4, 5:
			mult := uint64(usPerSecond)
			switch k {
			case 3:
				mult = 3600 * usPerSecond
			case 4:
				mult = 60 * usPerSecond
			}
			hi, lo := bits.Mul64(mag, mult)
			if hi != 0 {
				return interval{}, errRange
			}
			lo, carry := bits.Add64(lo, frac, 0)
			if carry != 0 {
				return interval{}, errRange
			}
			p, ok := signed(lo, neg)
			if !ok {
				return interval{}, errRange
			}
			s := micros + p
			if (p > 0 && s < micros) || (p < 0 && s > micros) {
				return interval{}, errRange
			}
			micros = s
		}
	}
	if parts == 0 || months > math.MaxInt32 || months < math.MinInt32 || days > math.MaxInt32 || days < math.MinInt32 {
		if parts == 0 {
			return interval{}, errSyntax
		}
		return interval{}, errRange
	}
	return interval{int32(months), int32(days), micros}, nil
}

// signed applies a sign to a magnitude within int64.
func signed(mag uint64, neg bool) (int64, bool) {
	if neg {
		if mag > 1<<63 {
			return 0, false
		}
		return int64(-mag), true // -(1<<63) wraps to MinInt64, as wanted
	}
	if mag > math.MaxInt64 {
		return 0, false
	}
	return int64(mag), true
}

func appendInterval(dst []byte, v interval) []byte {
	dst = appendInt(dst, v.months)
	dst = appendInt(dst, v.days)
	return appendLong(dst, v.micros)
}

func convInterval(dst, text []byte) ([]byte, error) {
	v, err := parseInterval(text)
	if err != nil {
		return dst, err
	}
	return appendInterval(dst, v), nil
}
