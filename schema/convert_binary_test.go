package schema

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/big"
	"strconv"
	"testing"
)

// numericBytes builds numeric_send's bytes.
func numericBytes(weight int16, sign, dscale uint16, digits ...uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(digits)))
	b = binary.BigEndian.AppendUint16(b, uint16(weight))
	b = binary.BigEndian.AppendUint16(b, sign)
	b = binary.BigEndian.AppendUint16(b, dscale)
	for _, d := range digits {
		b = binary.BigEndian.AppendUint16(b, d)
	}
	return b
}

func TestNumericText(t *testing.T) {
	cases := []struct {
		b    []byte
		want string
	}{
		{numericBytes(0, numericPos, 0), "0"},
		{numericBytes(0, numericPos, 3), "0.000"},
		{numericBytes(0, numericPos, 2, 1, 5000), "1.50"},
		{numericBytes(-1, numericNeg, 3, 10), "-0.001"},
		{numericBytes(1, numericPos, 0, 12, 3456), "123456"},
		{numericBytes(2, numericNeg, 0, 9), "-900000000"},
		{numericBytes(-3, numericPos, 9, 1), "0.000000000"}, // digits beyond dscale are not printed
		{numericBytes(-3, numericPos, 12, 1), "0.000000000001"},
		{numericBytes(0, numericNaN, 0), "NaN"},
		{numericBytes(0, numericPInf, 0), "Infinity"},
		{numericBytes(0, numericNInf, 0), "-Infinity"},
	}
	for _, c := range cases {
		got, err := appendNumericText(nil, c.b)
		if err != nil || string(got) != c.want {
			t.Errorf("%x: got %q (%v), want %q", c.b, got, err, c.want)
		}
	}
	for _, bad := range [][]byte{nil, {0, 1}, numericBytes(0, 0x1234, 0), numericBytes(0, numericPos, 0, 10000), numericBytes(0, numericPos, 0, 1)[:9]} {
		if got, err := appendNumericText(nil, bad); err == nil {
			t.Errorf("%x: got %q, want an error", bad, got)
		}
	}
}

// TestBinaryFixtures: hand-built send-format bytes against the Avro bytes
// of their text forms.
func TestBinaryFixtures(t *testing.T) {
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	be64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	cases := []struct {
		conv, bin convFunc
		text      string
		b         []byte
		varlen    bool
	}{
		{convBool, binBool, "t", []byte{1}, false},
		{convBool, binBool, "f", []byte{0}, false},
		{convInt16, binInt16, "-32768", []byte{0x80, 0}, false},
		{convInt32, binInt32, "-1", be32(math.MaxUint32), false},
		{convInt64, binInt64, "9223372036854775807", be64(math.MaxInt64), false},
		{convOID, binOID, "4294967295", be32(math.MaxUint32), false},
		{convFloat32, binFloat32, "NaN", be32(0xffc00001), false},
		{convFloat64, binFloat64, "NaN", be64(0xfff8000000000000), false},
		{convFloat64, binFloat64, "-0", be64(1 << 63), false},
		{convDate, binDate, "2000-01-01", be32(0), false},
		{convDate, binDate, "infinity", be32(math.MaxInt32), false},
		{convDate, binDate, "-infinity", be32(1 << 31), false},
		{convTimestamp, binTimestamp, "2000-01-01 00:00:00.000001", be64(1), false},
		{convTimestamptz, binTimestamp, "1999-12-31 23:59:59.999999+00", be64(math.MaxUint64), false},
		{convTimestamp, binTimestamp, "infinity", be64(math.MaxInt64), false},
		{convTime, binTime, "24:00:00", be64(86_400_000_000), false},
		{convUUID, binUUID, "00112233-4455-6677-8899-aabbccddeeff", []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}, false},
		{convBytea, binBytea, `\x00ff`, []byte{0, 0xff}, true},
		{convString, binJSONB, `{"a": 1}`, []byte("\x01{\"a\": 1}"), true},
	}
	for _, c := range cases {
		want, err := c.conv(nil, []byte(c.text))
		if err != nil {
			t.Fatalf("%q: %v", c.text, err)
		}
		got, err := c.bin(nil, c.b)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q from %x: got %x (%v), want %x", c.text, c.b, got, err, want)
		}
		if _, err := c.bin(nil, append(c.b[:len(c.b):len(c.b)], 0)); err == nil && !c.varlen {
			t.Errorf("%q: a byte too many is no error", c.text)
		}
	}
}

// FuzzBinaryNumeric: any bytes render without panicking, and a rendered
// numeric is the value its digits make, to its display scale.
func FuzzBinaryNumeric(f *testing.F) {
	f.Add(numericBytes(0, numericPos, 2, 1, 5000))
	f.Add(numericBytes(-1, numericNeg, 3, 10))
	f.Add(numericBytes(3, numericPos, 0, 1, 2, 3))
	f.Add(numericBytes(0, numericNaN, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		text, err := appendNumericText(nil, b)
		if err != nil {
			return
		}
		sign := binary.BigEndian.Uint16(b[4:6])
		if sign != numericPos && sign != numericNeg {
			return
		}
		got, ok := new(big.Rat).SetString(string(text))
		if !ok {
			t.Fatalf("%x renders as %q, not a number", b, text)
		}
		// The value of the digits, truncated to dscale decimals.
		weight := int(int16(binary.BigEndian.Uint16(b[2:4])))
		dscale := int(binary.BigEndian.Uint16(b[6:8]))
		want := new(big.Rat)
		for i := 0; 8+2*i < len(b); i++ {
			d := big.NewRat(int64(binary.BigEndian.Uint16(b[8+2*i:])), 1)
			e := weight - i
			p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10000), big.NewInt(int64(max(e, -e))), nil))
			if e < 0 {
				p.Inv(p)
			}
			want.Add(want, d.Mul(d, p))
		}
		scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(dscale)), nil)
		q := new(big.Int).Quo(new(big.Int).Mul(want.Num(), scale), want.Denom())
		want.SetFrac(q, scale)
		if sign == numericNeg {
			want.Neg(want)
		}
		if got.Cmp(want) != 0 {
			t.Fatalf("%x renders as %q, want %s", b, text, want.FloatString(dscale))
		}
	})
}

// FuzzBinaryNumbers: integers and floats from their send bytes write what
// their text forms write.
func FuzzBinaryNumbers(f *testing.F) {
	f.Add(uint64(0))
	f.Add(uint64(1 << 63))
	f.Add(math.Float64bits(math.Inf(-1)))
	f.Add(uint64(0x7ff8000000000001))
	f.Fuzz(func(t *testing.T, v uint64) {
		check := func(what string, conv, bin convFunc, text string, b []byte) {
			want, err := conv(nil, []byte(text))
			if err != nil {
				t.Fatalf("%s %q: %v", what, text, err)
			}
			got, err := bin(nil, b)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s %q from %x: got %x (%v), want %x", what, text, b, got, err, want)
			}
		}
		check("int8", convInt64, binInt64, strconv.FormatInt(int64(v), 10), binary.BigEndian.AppendUint64(nil, v))
		check("int4", convInt32, binInt32, strconv.FormatInt(int64(int32(v)), 10), binary.BigEndian.AppendUint32(nil, uint32(v)))
		check("int2", convInt16, binInt16, strconv.FormatInt(int64(int16(v)), 10), binary.BigEndian.AppendUint16(nil, uint16(v)))
		check("oid", convOID, binOID, strconv.FormatUint(uint64(uint32(v)), 10), binary.BigEndian.AppendUint32(nil, uint32(v)))
		check("float8", convFloat64, binFloat64, pgFloat(math.Float64frombits(v), 64), binary.BigEndian.AppendUint64(nil, v))
		f32 := math.Float32frombits(uint32(v))
		check("float4", convFloat32, binFloat32, pgFloat(float64(f32), 32), binary.BigEndian.AppendUint32(nil, uint32(v)))
		d := int32(v)
		if d != math.MaxInt32 && d != math.MinInt32 && int64(d)+pgEpochDays <= math.MaxInt32 {
			var text []byte
			text, _ = AppendBinaryText(text, Type{Name: "int8"}, binary.BigEndian.AppendUint64(nil, uint64(int64(d)+pgEpochDays)))
			want := appendInt(nil, int32(int64(d)+pgEpochDays))
			got, err := binDate(nil, binary.BigEndian.AppendUint32(nil, uint32(d)))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("date %d (%s days since 1970): got %x (%v), want %x", d, text, got, err, want)
			}
		}
	})
}

// pgFloat spells f as PostgreSQL prints it.
func pgFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// BenchmarkAppendValueBinary is BenchmarkAppendValue's row (its enum
// column aside: enums are not binary-safe) from text and from send-format
// values, the same Avro record either way.
func BenchmarkAppendValueBinary(b *testing.B) {
	tbl, text := benchTable()
	tbl.Columns[2].Type = typ("text")
	bin := []Datum{
		{Text: binary.BigEndian.AppendUint64(nil, 1234567)},
		{Text: binary.BigEndian.AppendUint32(nil, 42)},
		{Text: []byte("shipped")},
		{Text: []byte("leave at the door, ring twice")},
		{Text: numericBytes(0, numericPos, 2, 1234, 5000)},
		{Text: binary.BigEndian.AppendUint64(nil, uint64(1717245296789012-pgEpochMicros))},
		{Text: []byte{1}},
		{Text: binary.BigEndian.AppendUint64(nil, math.Float64bits(2.5))},
		{Text: []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}},
		{Text: []byte("\x01" + `{"gift": true, "lines": [1, 2, 3], "channel": "web"}`)},
	}
	for i := range bin {
		bin[i].Binary = true
	}
	c := mustCodec(b, tbl, EnvelopeDebezium)
	want, err := c.AppendValue(nil, &Event{Op: OpCreate, After: text})
	if err != nil {
		b.Fatal(err)
	}
	if got, err := c.AppendValue(nil, &Event{Op: OpCreate, After: bin}); err != nil || !bytes.Equal(got, want) {
		b.Fatalf("binary row: %x (%v), want %x", got, err, want)
	}
	for _, m := range []struct {
		name string
		row  []Datum
	}{{"text", text}, {"binary", bin}} {
		b.Run(m.name, func(b *testing.B) {
			ev := &Event{Op: OpCreate, After: m.row, TsMs: 1717245296789, TxID: 1234, LSN: 0x16B3748, NowMs: 1717245296800}
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = c.AppendValue(buf[:0], ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
