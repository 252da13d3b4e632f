package schema

import (
	"bytes"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// pgQuoteArrayElem quotes an element as PostgreSQL's array_out does.
func pgQuoteArrayElem(s string, delim byte) string {
	need := s == "" || strings.EqualFold(s, "NULL")
	for i := 0; i < len(s) && !need; i++ {
		switch c := s[i]; c {
		case '{', '}', '"', '\\', ' ', '\t', '\n', '\r', '\v', '\f', delim:
			need = true
		}
	}
	if !need {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// nullElem stands for a null element in the fuzzers' element lists.
const nullElem = "\x01NULL"

func pgArrayLiteral(elems []string, delim byte) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(delim)
		}
		if e == nullElem {
			b.WriteString("NULL")
		} else {
			b.WriteString(pgQuoteArrayElem(e, delim))
		}
	}
	b.WriteByte('}')
	return b.String()
}

// scanArray lists an array literal's elements, unescaped, nulls as nullElem.
func scanArray(text string, delim byte) ([]string, error) {
	s := arrayScanner{text: []byte(text), delim: delim}
	if err := s.start(); err != nil {
		return nil, err
	}
	out := []string{}
	for {
		el, done, err := s.next()
		if err != nil {
			return nil, err
		}
		if done {
			return out, nil
		}
		if el.null {
			out = append(out, nullElem)
			continue
		}
		v, err := appendConv(nil, el.raw, el.escaped, convString)
		if err != nil {
			return nil, err
		}
		out = append(out, string(readBytesRaw(v)))
	}
}

// readBytesRaw strips an Avro length prefix (trusted input).
func readBytesRaw(b []byte) []byte {
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
	return b[i:]
}

// decodeArrayOfStrings decodes our Avro array of ["null","string"] with hamba.
func decodeArrayOfStrings(t *testing.T, b []byte) []string {
	t.Helper()
	s := parse(t, `{"type":"array","items":["null","string"]}`)
	r := &byteByByte{r: bytes.NewReader(b)}
	var v []any
	if err := avroDecode(s, r, &v); err != nil {
		t.Fatalf("decoding % x: %v", b, err)
	}
	if r.r.Len() != 0 {
		t.Fatalf("%d trailing bytes", r.r.Len())
	}
	out := []string{}
	for _, x := range v {
		if x == nil {
			out = append(out, nullElem)
		} else {
			out = append(out, x.(string))
		}
	}
	return out
}

func FuzzArray(f *testing.F) {
	for _, s := range []string{
		"{}", "{1,NULL,3}", `{plain,"a b","NULL",NULL,"","q\"uote","back\\slash","{brace}","a,b"}`,
		"{{1,2},{3,4}}", "[0:2]={7,8,9}", "[-1:0][2:3]={{1,2},{3,4}}", "{(3,4),(1,2);(0,0),(0,0)}",
		`{"\\x00ff"}`, "{1,}", "{,1}", `{"abc}`, "{{1},2}", "{}}", "", "{a\\,b}", "{{}}", "[1:1]=",
	} {
		f.Add(s, "a\x00b c\x00\x01NULL\x00", false)
	}
	f.Add("{}", "", true)
	f.Add("{}", "\x00", false)
	f.Add("{}", "NULL\x00null\x00;\x00\"\\", true)
	f.Fuzz(func(t *testing.T, text, list string, semicolon bool) {
		delim := byte(',')
		if semicolon {
			delim = ';'
		}
		conv := (&arrayConv{elem: convString, delim: delim}).append
		// Any text: no panic; accepted text re-printed PostgreSQL's way reads
		// back the same, and the Avro bytes decode to the same elements.
		if elems, err := scanArray(text, delim); err == nil {
			again, err := scanArray(pgArrayLiteral(elems, delim), delim)
			if err != nil || !reflect.DeepEqual(again, elems) {
				t.Fatalf("%q -> %q -> %q -> %q, %v", text, elems, pgArrayLiteral(elems, delim), again, err)
			}
			out, err := conv([]byte{0xAA}, []byte(text))
			if err != nil {
				t.Fatalf("%q scans but does not convert: %v", text, err)
			}
			if got := decodeArrayOfStrings(t, out[1:]); !reflect.DeepEqual(got, elems) {
				t.Fatalf("%q: Avro %q, scanned %q", text, got, elems)
			}
		} else if out, err := conv([]byte{0xAA}, []byte(text)); err == nil || len(out) != 1 {
			t.Fatalf("%q does not scan but converts (% x, %v)", text, out, err)
		}
		// Any list of elements: printed PostgreSQL's way, it converts back.
		elems := []string{}
		if list != "" {
			elems = strings.Split(list, "\x00")
		}
		lit := pgArrayLiteral(elems, delim)
		out, err := conv(nil, []byte(lit))
		if err != nil {
			t.Fatalf("%q: %v", lit, err)
		}
		if got := decodeArrayOfStrings(t, out); !reflect.DeepEqual(got, elems) {
			t.Fatalf("%q: got %q, want %q", lit, got, elems)
		}
	})
}

// pgHstore prints pairs as hstore_out does.
func pgHstore(pairs [][2]string) string {
	q := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(q(p[0]))
		b.WriteString("=>")
		if p[1] == nullElem {
			b.WriteString("NULL")
		} else {
			b.WriteString(q(p[1]))
		}
	}
	return b.String()
}

func decodeHstore(t *testing.T, b []byte) map[string]any {
	t.Helper()
	s := parse(t, `{"type":"map","values":["null","string"]}`)
	r := &byteByByte{r: bytes.NewReader(b)}
	var v map[string]any
	if err := avroDecode(s, r, &v); err != nil {
		t.Fatalf("decoding % x: %v", b, err)
	}
	if r.r.Len() != 0 {
		t.Fatalf("%d trailing bytes", r.r.Len())
	}
	return v
}

func FuzzHstore(f *testing.F) {
	for _, s := range []string{
		``, `"a"=>"1", "b"=>NULL`, `"q\"k"=>"back\\slash", "NULL"=>"NULL", ""=>""`, `"a b"=>"c => d, e"`,
		`a=>1`, `"a"=>"b", `, `"a"=>"b`, `"a"=>"b" x`, `"a"=>NULLx`, `  "a"  =>  "b"  ,  "c"=>"d"  `,
	} {
		f.Add(s, "k\x00v\x00n\x00\x01NULL")
	}
	f.Fuzz(func(t *testing.T, text, list string) {
		out, err := convHstore([]byte{0xAA}, []byte(text))
		if err != nil {
			if len(out) != 1 {
				t.Fatalf("error %v but wrote % x", err, out)
			}
		} else {
			// Re-printed hstore's way, it reads back the same map.
			m := decodeHstore(t, out[1:])
			var pairs [][2]string
			for k, v := range m {
				if v == nil {
					pairs = append(pairs, [2]string{k, nullElem})
				} else {
					pairs = append(pairs, [2]string{k, v.(string)})
				}
			}
			again, err := convHstore(nil, []byte(pgHstore(pairs)))
			if err != nil || !reflect.DeepEqual(decodeHstore(t, again), m) {
				t.Fatalf("%q -> %v -> %q: %v", text, m, pgHstore(pairs), err)
			}
		}
		// Any pairs printed hstore's way convert to the same map.
		parts := strings.Split(list, "\x00")
		var pairs [][2]string
		want := map[string]any{}
		for i := 0; i+1 < len(parts); i += 2 {
			pairs = append(pairs, [2]string{parts[i], parts[i+1]})
			if parts[i+1] == nullElem {
				want[parts[i]] = nil
			} else {
				want[parts[i]] = parts[i+1]
			}
		}
		lit := pgHstore(pairs)
		out, err = convHstore(nil, []byte(lit))
		if err != nil {
			t.Fatalf("%q: %v", lit, err)
		}
		if got := decodeHstore(t, out); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %v, want %v", lit, got, want)
		}
	})
}

// pgInterval prints an interval as PostgreSQL's IntervalStyle iso_8601 does
// (EncodeInterval), fields split with C's truncating division.
func pgInterval(v interval) string {
	year, mon := int64(v.months)/12, int64(v.months)%12
	hour := v.micros / 3_600_000_000
	rem := v.micros % 3_600_000_000
	min := rem / 60_000_000
	rem %= 60_000_000
	sec, fsec := rem/1_000_000, rem%1_000_000
	if year == 0 && mon == 0 && v.days == 0 && hour == 0 && min == 0 && sec == 0 && fsec == 0 {
		return "PT0S"
	}
	var b strings.Builder
	part := func(n int64, unit byte) {
		if n != 0 {
			b.WriteString(strconv.FormatInt(n, 10))
			b.WriteByte(unit)
		}
	}
	b.WriteByte('P')
	part(year, 'Y')
	part(mon, 'M')
	part(int64(v.days), 'D')
	if hour != 0 || min != 0 || sec != 0 || fsec != 0 {
		b.WriteByte('T')
	}
	part(hour, 'H')
	part(min, 'M')
	if sec != 0 || fsec != 0 {
		if sec < 0 || fsec < 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.FormatInt(abs64(sec), 10))
		if fsec != 0 {
			b.WriteString(strings.TrimRight("."+strconv.FormatInt(1_000_000+abs64(fsec), 10)[1:], "0"))
		}
		b.WriteByte('S')
	}
	return b.String()
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func FuzzInterval(f *testing.F) {
	for _, s := range []string{
		"PT0S", "P1Y2M3DT4H5M6.789S", "P-1Y-2M3DT-4H-5M-6.789S", "PT-0.5S", "P30D", "PT2562047788H54.775807S",
		"PT-2562047788H-54.775808S", "P178956970Y7M", "infinity", "-infinity", "P", "PT", "P1D2Y", "PT1.5M",
		"PT0.1234567S", "PT2562047788H54.775808S", "P+1Y", "PT1H1H", "P1YT",
	} {
		f.Add(s, int32(0), int32(0), int64(0))
	}
	f.Add("", int32(math.MaxInt32), int32(math.MaxInt32), int64(math.MaxInt64))
	f.Add("", int32(math.MinInt32), int32(math.MinInt32), int64(math.MinInt64))
	f.Add("", int32(-13), int32(5), int64(-1))
	f.Fuzz(func(t *testing.T, text string, months, days int32, micros int64) {
		if v, err := parseInterval([]byte(text)); err == nil && text != "infinity" && text != "-infinity" {
			s := pgInterval(v)
			if back, err := parseInterval([]byte(s)); err != nil || back != v {
				t.Fatalf("%q -> %+v -> %q -> %+v, %v", text, v, s, back, err)
			}
		}
		v := interval{months, days, micros}
		s := pgInterval(v)
		back, err := parseInterval([]byte(s))
		if err != nil || back != v {
			t.Fatalf("%+v -> %q -> %+v, %v", v, s, back, err)
		}
	})
}

func avroDecode(s avro.Schema, r io.Reader, v any) error {
	return avro.NewDecoderForSchema(s, r).Decode(v)
}
