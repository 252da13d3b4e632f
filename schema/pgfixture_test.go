package schema

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestPostgresFixtures parses text forms PostgreSQL printed and compares with
// the values PostgreSQL computed for them (testdata/pg15_text.tsv), so the
// parsers agree with the server on BC years, years past 9999, offsets,
// infinities' neighbours, float digits and numeric typmods. The fixture was
// made with psql, e.g.
//
//	SELECT 'date', d::text, (d - '1970-01-01'::date)::text FROM unnest(ARRAY[...]::date[]) d;
//	SELECT 'timestamptz', t::text, trunc(extract(epoch from t)*1000000)::text FROM ...;
//	SELECT 'numeric(10,2)', n::text, trunc(n*100)::text FROM ...;
//	SELECT 'float8', x::text, float8send(x)::text FROM ...;
//	SELECT 'typmod', format_type(atttypid, atttypmod), atttypmod::text FROM pg_attribute ...;
func TestPostgresFixtures(t *testing.T) {
	f, err := os.Open("testdata/pg15_text.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "\t")
		if len(parts) != 3 {
			t.Fatalf("bad fixture line %q", line)
		}
		kind, text, want := parts[0], parts[1], parts[2]
		n++
		t.Run(kind+" "+text, func(t *testing.T) {
			got, err := pgFixtureValue(kind, text)
			if err != nil {
				t.Fatal(err)
			}
			if kind == "typmod" {
				tm, err := strconv.ParseInt(want, 10, 32)
				if err != nil {
					t.Fatal(err)
				}
				p, s, ok := numericTypmod(int32(tm))
				want = fmt.Sprintf("numeric(%d,%d)", p, s)
				if !ok {
					want = "no precision"
				}
			}
			if got != want {
				t.Errorf("%s %q: got %s, PostgreSQL says %s", kind, text, got, want)
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 40 {
		t.Fatalf("only %d fixture lines", n)
	}
}

// pgFixtureValue computes, with this package's parsers, what the fixture's
// third column holds.
func pgFixtureValue(kind, text string) (string, error) {
	b := []byte(text)
	switch kind {
	case "date":
		v, err := parseDate(b)
		return strconv.Itoa(int(v)), err
	case "timestamp", "timestamptz":
		v, err := parseTimestamp(b, kind == "timestamptz")
		return strconv.FormatInt(v, 10), err
	case "time":
		v, err := parseTime(b)
		return strconv.FormatInt(v, 10), err
	case "float4":
		out, err := convFloat32(nil, b)
		return `\x` + hex.EncodeToString(binary.BigEndian.AppendUint32(nil, binary.LittleEndian.Uint32(out))), err
	case "float8":
		out, err := convFloat64(nil, b)
		return `\x` + hex.EncodeToString(binary.BigEndian.AppendUint64(nil, binary.LittleEndian.Uint64(out))), err
	case "typmod":
		// The text is format_type, e.g. numeric(5,-2); the fixture holds
		// atttypmod, which the caller decodes.
		return text, nil
	}
	if strings.HasPrefix(kind, "numeric(") {
		var p, s int
		if _, err := fmt.Sscanf(kind, "numeric(%d,%d)", &p, &s); err != nil {
			return "", err
		}
		ap, as := avroDecimal(p, s)
		d := decimalConv{precision: ap, scale: as}
		out, err := d.append(nil, b)
		if err != nil {
			return "", err
		}
		_, n := binary.Varint(out)
		v := twos(out[n:])
		// The fixture's numerics are scaled like the Avro decimal: by 10^s for
		// 0 <= s, by 1 for a negative scale.
		return v.String(), nil
	}
	return "", fmt.Errorf("unknown fixture kind %q", kind)
}
