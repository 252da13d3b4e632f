package schema

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readBytes reads one Avro length-prefixed bytes value.
func readBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var u uint64
	var shift uint
	i := 0
	for ; i < len(b); i++ {
		u |= uint64(b[i]&0x7f) << shift
		shift += 7
		if b[i] < 0x80 {
			i++
			break
		}
	}
	n := int64(u>>1) ^ -int64(u&1)
	if n < 0 || int64(len(b)-i) != n {
		t.Fatalf("bad length prefix %d for %d bytes (% x)", n, len(b)-i, b)
	}
	return b[i:]
}

func FuzzDecimal(f *testing.F) {
	seeds := []struct {
		text string
		p, s int
	}{
		{"12345678.90", 10, 2}, {"-0.01", 10, 2}, {"0", 1, 0}, {"5", 10, 2}, {"-128", 3, 0},
		{"99999999999999999999999999999999999999", 38, 0}, {"-0.00000000000000000001", 40, 20},
		{strings.Repeat("9", 50) + ".5", 60, 1}, {"NaN", 10, 2}, {"1.230", 5, 2}, {"1.2.3", 5, 2}, {"+.5", 3, 1},
		{"-", 3, 1}, {"00012.50", 6, 2}, {"1234500", 5, -2},
	}
	for _, s := range seeds {
		f.Add(s.text, s.p, s.s)
	}
	f.Fuzz(func(t *testing.T, text string, p, s int) {
		p, s = p%1001, s%1001
		if p < 1 || s < -1000 {
			return
		}
		ap, as := avroDecimal(p, s)
		d := decimalConv{precision: ap, scale: as}
		out, err := d.append([]byte{0xAA}, []byte(text))
		if err != nil {
			if len(out) != 1 {
				t.Fatalf("error %v but wrote % x", err, out)
			}
			return
		}
		b := readBytes(t, out[1:])
		if !minimalTwosOK(b) {
			t.Fatalf("%q: not minimal: % x", text, b)
		}
		got := new(big.Rat).SetFrac(twos(b), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(as)), nil))
		want, ok := new(big.Rat).SetString(text)
		if !ok || strings.ContainsAny(text, "eE/xXpP_") {
			t.Fatalf("accepted %q, which is not a plain decimal", text)
		}
		if got.Cmp(want) != 0 {
			t.Fatalf("%q as decimal(%d,%d): got %s", text, ap, as, got.FloatString(as))
		}
	})
}

// pgTimestamp formats micros as PostgreSQL prints a timestamp (with "+00"
// when tz), using the time package as an independent calendar.
func pgTimestamp(us int64, tz bool) string {
	tm := time.UnixMicro(us).UTC()
	y, bc := tm.Year(), false
	if y <= 0 {
		y, bc = 1-y, true
	}
	s := fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d", y, tm.Month(), tm.Day(), tm.Hour(), tm.Minute(), tm.Second())
	if frac := tm.Nanosecond() / 1000; frac != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%06d", frac), "0")
	}
	if tz {
		s += "+00"
	}
	if bc {
		s += " BC"
	}
	return s
}

func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{
		"2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.123456+00", "0044-03-15 10:00:00 BC",
		"10000-01-01 00:00:00", "infinity", "-infinity", "2024-01-02 03:04:05+05:30",
		"1850-01-01 00:00:00+00:53:28", "4714-11-24 00:00:00+00 BC", "294276-12-31 23:59:59.999999",
		"2024-02-30 00:00:00", "2024-01-01 24:00:00", "2024-01-01 00:00:00.", "",
	} {
		f.Add(s, int64(0))
	}
	f.Add("", int64(math.MaxInt64-1))
	f.Add("", int64(math.MinInt64+1))
	f.Add("", int64(-62135596800000001))
	f.Fuzz(func(t *testing.T, text string, us int64) {
		for _, tz := range []bool{false, true} {
			v, err := parseTimestamp([]byte(text), tz)
			if err == nil && v != math.MaxInt64 && v != math.MinInt64 {
				// Round trip through an independent formatter.
				back, err := parseTimestamp([]byte(pgTimestamp(v, tz)), tz)
				if err != nil || back != v {
					t.Fatalf("%q -> %d -> %q -> %d, %v", text, v, pgTimestamp(v, tz), back, err)
				}
			}
			// And the other way, from any instant that fits.
			s := pgTimestamp(us, tz)
			back, err := parseTimestamp([]byte(s), tz)
			if errors.Is(err, errTimeRange) {
				continue
			}
			if err != nil || back != us {
				t.Fatalf("%d -> %q -> %d, %v", us, s, back, err)
			}
		}
	})
}

// pgDate formats days since the epoch as PostgreSQL prints a date.
func pgDate(days int32) string {
	tm := time.Unix(int64(days)*86400, 0).UTC()
	y, bc := tm.Year(), ""
	if y <= 0 {
		y, bc = 1-y, " BC"
	}
	return fmt.Sprintf("%04d-%02d-%02d%s", y, tm.Month(), tm.Day(), bc)
}

func FuzzDate(f *testing.F) {
	for _, s := range []string{"2024-02-29", "0044-03-15 BC", "12345-06-07", "infinity", "-infinity", "0000-01-01", "2023-02-29", "5874897-12-31", "4714-11-24 BC"} {
		f.Add(s, int32(0))
	}
	f.Add("", int32(math.MaxInt32-1))
	f.Add("", int32(math.MinInt32+1))
	f.Fuzz(func(t *testing.T, text string, days int32) {
		if v, err := parseDate([]byte(text)); err == nil && v != math.MaxInt32 && v != math.MinInt32 {
			s := pgDate(v)
			if back, err := parseDate([]byte(s)); err != nil || back != v {
				t.Fatalf("%q -> %d -> %q -> %d, %v", text, v, s, back, err)
			}
		}
		if days == math.MaxInt32 || days == math.MinInt32 {
			return
		}
		s := pgDate(days)
		if back, err := parseDate([]byte(s)); err != nil || back != days {
			t.Fatalf("%d -> %q -> %d, %v", days, s, back, err)
		}
	})
}

func FuzzBytea(f *testing.F) {
	for _, s := range []string{`\x`, `\x00ff10`, `\xDEADbeef`, `\x1`, `abc`, `\xzz`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		out, err := convBytea([]byte{0xAA}, []byte(text))
		want, werr := []byte(nil), errors.New("not hex form")
		if strings.HasPrefix(text, `\x`) {
			want, werr = hex.DecodeString(text[2:])
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: error %v, hex.DecodeString %v", text, err, werr)
		}
		if err != nil {
			if len(out) != 1 {
				t.Fatalf("error %v but wrote % x", err, out)
			}
			return
		}
		if got := readBytes(t, out[1:]); !bytes.Equal(got, want) {
			t.Fatalf("%q: % x, want % x", text, got, want)
		}
	})
}

func FuzzParseInt(f *testing.F) {
	for _, s := range []string{"0", "-9223372036854775808", "9223372036854775807", "9223372036854775808", "+1", "-", "", "1a", "18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, err := parseInt([]byte(text), math.MinInt64, math.MaxInt64)
		want, werr := strconv.ParseInt(text, 10, 64)
		if (err == nil) != (werr == nil) || (err == nil && got != want) {
			t.Fatalf("%q: %d %v, strconv %d %v", text, got, err, want, werr)
		}
		got32, err := parseInt([]byte(text), math.MinInt32, math.MaxInt32)
		want32, werr := strconv.ParseInt(text, 10, 32)
		if (err == nil) != (werr == nil) || (err == nil && got32 != want32) {
			t.Fatalf("%q: int32 %d %v, strconv %d %v", text, got32, err, want32, werr)
		}
	})
}

func FuzzUUID(f *testing.F) {
	for _, s := range []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99x9c0b-4ef8-bb6d-6bb9bd380a11", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		_, err := convUUID(nil, []byte(text))
		ok := len(text) == 36
		for i := 0; ok && i < 36; i++ {
			c := text[i]
			if i == 8 || i == 13 || i == 18 || i == 23 {
				ok = c == '-'
			} else {
				ok = strings.ContainsRune("0123456789abcdefABCDEF", rune(c))
			}
		}
		if ok != (err == nil) {
			t.Fatalf("%q: valid %v, error %v", text, ok, err)
		}
	})
}
