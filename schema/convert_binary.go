package schema

import (
	"encoding/binary"
	"errors"
	"math"
)

// Binary pgoutput values (START_REPLICATION option binary 'true'): each
// column in its type's send format. The converters below write exactly the
// Avro bytes the text converters write for the same value, which the tests
// check value by value; BinarySafe names the types they cover.

var (
	errBinaryLength = errors.New("binary value of the wrong length")
	nanText         = []byte("NaN")
)

// Epoch shifts between PostgreSQL's 2000-01-01 and Avro's 1970-01-01.
const (
	pgEpochDays   = 10957
	pgEpochMicros = pgEpochDays * usPerDay
)

// binaryConv returns the binary converter of a type written in format f,
// nil when pgkafka does not decode the type's binary form.
func binaryConv(t Type, f format) convFunc {
	if t.Category == 'A' && !isVectorType(t.Name) {
		return nil
	}
	switch t.Name {
	case "bool":
		return binBool
	case "int2":
		return binInt16
	case "int4":
		return binInt32
	case "int8":
		return binInt64
	case "oid":
		return binOID
	case "float4":
		return binFloat32
	case "float8":
		return binFloat64
	case "numeric":
		p, s, ok := numericTypmod(t.Typmod)
		if !ok || f.decimal == DecimalString {
			return binNumericString
		}
		p, s = avroDecimal(p, s)
		return (&binDecimal{&decimalConv{precision: p, scale: s, nonFinite: f.nonFinite}}).append
	case "text", "varchar", "bpchar", "name", "json":
		// Their send functions write the text form.
		return convString
	case "jsonb":
		return binJSONB
	case "bytea":
		return binBytea
	case "uuid":
		return binUUID
	case "date":
		return binDate
	case "time":
		return binTime
	case "timestamp", "timestamptz":
		return binTimestamp
	}
	return nil
}

// BinarySafe reports whether pgkafka decodes the binary form of t (a base
// type, domains resolved): the types source.advanced.pgoutputBinary: auto
// requires of every published column.
func BinarySafe(t Type) bool {
	return binaryConv(t, format{}) != nil
}

// BinaryKeyText reports whether AppendBinaryText renders t: the types a key
// column may have in binary mode, where keys are compared as text.
func BinaryKeyText(t Type) bool {
	switch t.Name {
	case "bool", "int2", "int4", "int8", "oid", "uuid", "numeric", "text", "varchar", "bpchar", "name":
		return t.Category != 'A'
	}
	return false
}

// AppendBinaryText appends the text form PostgreSQL prints for the binary
// value b of type t, for the types BinaryKeyText accepts.
func AppendBinaryText(dst []byte, t Type, b []byte) ([]byte, error) {
	switch t.Name {
	case "bool":
		if len(b) != 1 {
			return dst, errBinaryLength
		}
		if b[0] != 0 {
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	case "int2":
		if len(b) != 2 {
			return dst, errBinaryLength
		}
		return appendDecimal(dst, int64(int16(binary.BigEndian.Uint16(b)))), nil
	case "int4":
		if len(b) != 4 {
			return dst, errBinaryLength
		}
		return appendDecimal(dst, int64(int32(binary.BigEndian.Uint32(b)))), nil
	case "int8":
		if len(b) != 8 {
			return dst, errBinaryLength
		}
		return appendDecimal(dst, int64(binary.BigEndian.Uint64(b))), nil
	case "oid":
		if len(b) != 4 {
			return dst, errBinaryLength
		}
		return appendDecimal(dst, int64(binary.BigEndian.Uint32(b))), nil
	case "uuid":
		if len(b) != 16 {
			return dst, errBinaryLength
		}
		return appendUUIDText(dst, b), nil
	case "numeric":
		return appendNumericText(dst, b)
	case "text", "varchar", "bpchar", "name":
		return append(dst, b...), nil
	}
	return dst, ErrNoBinary
}

// appendDecimal appends v in base 10 (strconv.AppendInt without the import
// of a second formatting path).
func appendDecimal(dst []byte, v int64) []byte {
	var buf [20]byte
	i := len(buf)
	u := uint64(v)
	if v < 0 {
		u = -u
	}
	for u >= 10 {
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
	}
	i--
	buf[i] = byte('0' + u)
	if v < 0 {
		dst = append(dst, '-')
	}
	return append(dst, buf[i:]...)
}

func binBool(dst, b []byte) ([]byte, error) {
	if len(b) != 1 {
		return dst, errBinaryLength
	}
	return appendBool(dst, b[0] != 0), nil
}

func binInt16(dst, b []byte) ([]byte, error) {
	if len(b) != 2 {
		return dst, errBinaryLength
	}
	return appendLong(dst, int64(int16(binary.BigEndian.Uint16(b)))), nil
}

func binInt32(dst, b []byte) ([]byte, error) {
	if len(b) != 4 {
		return dst, errBinaryLength
	}
	return appendLong(dst, int64(int32(binary.BigEndian.Uint32(b)))), nil
}

func binInt64(dst, b []byte) ([]byte, error) {
	if len(b) != 8 {
		return dst, errBinaryLength
	}
	return appendLong(dst, int64(binary.BigEndian.Uint64(b))), nil
}

func binOID(dst, b []byte) ([]byte, error) {
	if len(b) != 4 {
		return dst, errBinaryLength
	}
	return appendLong(dst, int64(binary.BigEndian.Uint32(b))), nil
}

// binFloat32 and binFloat64 keep every bit pattern but NaN's, which the
// text path canonicalizes (PostgreSQL prints every NaN as "NaN").
func binFloat32(dst, b []byte) ([]byte, error) {
	if len(b) != 4 {
		return dst, errBinaryLength
	}
	f := math.Float32frombits(binary.BigEndian.Uint32(b))
	if f != f {
		return convFloat32(dst, nanText)
	}
	return appendFloat(dst, f), nil
}

func binFloat64(dst, b []byte) ([]byte, error) {
	if len(b) != 8 {
		return dst, errBinaryLength
	}
	f := math.Float64frombits(binary.BigEndian.Uint64(b))
	if f != f {
		return binary.LittleEndian.AppendUint64(dst, canonicalNaN64), nil
	}
	return appendDouble(dst, f), nil
}

var errJSONBVersion = errors.New("binary jsonb of an unknown version (want 1)")

func binJSONB(dst, b []byte) ([]byte, error) {
	if len(b) == 0 || b[0] != 1 {
		return dst, errJSONBVersion
	}
	return appendBytes(dst, b[1:]), nil
}

func binBytea(dst, b []byte) ([]byte, error) {
	return appendBytes(dst, b), nil
}

func binUUID(dst, b []byte) ([]byte, error) {
	if len(b) != 16 {
		return dst, errBinaryLength
	}
	dst = append(dst, 36<<1) // zigzag length of the 36-byte text
	return appendUUIDText(dst, b), nil
}

const hexDigits = "0123456789abcdef"

// appendUUIDText writes the 8-4-4-4-12 lower-case form uuid_out prints.
func appendUUIDText(dst, b []byte) []byte {
	for i, c := range b[:16] {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// binDate: int32 days since 2000-01-01; ±infinity are MaxInt32 and
// MinInt32, written as parseDate writes them.
func binDate(dst, b []byte) ([]byte, error) {
	if len(b) != 4 {
		return dst, errBinaryLength
	}
	d := int32(binary.BigEndian.Uint32(b))
	if d == math.MaxInt32 || d == math.MinInt32 {
		return appendInt(dst, d), nil
	}
	days := int64(d) + pgEpochDays
	if days > math.MaxInt32 || days < math.MinInt32 {
		return dst, errRange
	}
	return appendInt(dst, int32(days)), nil
}

func binTime(dst, b []byte) ([]byte, error) {
	if len(b) != 8 {
		return dst, errBinaryLength
	}
	return appendLong(dst, int64(binary.BigEndian.Uint64(b))), nil
}

// binTimestamp (timestamp and timestamptz, both UTC microseconds since
// 2000-01-01 in binary); ±infinity are MaxInt64 and MinInt64, and the
// range is parseTimestamp's.
func binTimestamp(dst, b []byte) ([]byte, error) {
	if len(b) != 8 {
		return dst, errBinaryLength
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return appendLong(dst, us), nil
	}
	days := us / usPerDay
	if us%usPerDay < 0 {
		days--
	}
	days += pgEpochDays
	if days > maxDaysForMicros || days < -maxDaysForMicros {
		return dst, errTimeRange
	}
	return appendLong(dst, us+pgEpochMicros), nil
}

// Binary numeric (numeric_send): ndigits, weight, sign, dscale as 16-bit
// integers, then ndigits base-10000 digits, most significant first; the
// value is sum(digit[i] * 10000^(weight-i)).
const (
	numericPos  = 0x0000
	numericNeg  = 0x4000
	numericNaN  = 0xC000
	numericPInf = 0xD000
	numericNInf = 0xF000
)

var errNumeric = errors.New("malformed binary numeric")

// binDecimal renders a binary numeric as numeric_out's text, on the stack
// for up to 96 bytes, then writes it as the column's decimal does.
type binDecimal struct {
	dec *decimalConv
}

func (n *binDecimal) append(dst, b []byte) ([]byte, error) {
	var buf [96]byte
	text, err := appendNumericText(buf[:0], b)
	if err != nil {
		return dst, err
	}
	return n.dec.append(dst, text)
}

// binNumericString writes a binary numeric as an Avro string of
// numeric_out's text: the text is rendered in place, then moved behind its
// length.
func binNumericString(dst, b []byte) ([]byte, error) {
	start := len(dst)
	dst, err := appendNumericText(dst, b)
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start
	var hdr [10]byte
	h := appendLong(hdr[:0], int64(n))
	dst = append(dst, h...)
	copy(dst[start+len(h):], dst[start:start+n])
	copy(dst[start:], h)
	return dst, nil
}

// appendNumericText appends the text numeric_out prints for the binary
// numeric b: NaN, Infinity, -Infinity, or [-]digits[.dscale digits].
func appendNumericText(dst, b []byte) ([]byte, error) {
	if len(b) < 8 {
		return dst, errNumeric
	}
	ndigits := int(binary.BigEndian.Uint16(b[0:2]))
	weight := int(int16(binary.BigEndian.Uint16(b[2:4])))
	sign := binary.BigEndian.Uint16(b[4:6])
	dscale := int(binary.BigEndian.Uint16(b[6:8]))
	switch sign {
	case numericNaN:
		return append(dst, "NaN"...), nil
	case numericPInf:
		return append(dst, "Infinity"...), nil
	case numericNInf:
		return append(dst, "-Infinity"...), nil
	case numericPos, numericNeg:
	default:
		return dst, errNumeric
	}
	if len(b) != 8+2*ndigits || dscale > 0x3fff {
		return dst, errNumeric
	}
	digit := func(i int) int {
		if i < 0 || i >= ndigits {
			return 0
		}
		return int(binary.BigEndian.Uint16(b[8+2*i:]))
	}
	for i := range ndigits {
		if digit(i) > 9999 {
			return dst, errNumeric
		}
	}
	if sign == numericNeg {
		dst = append(dst, '-')
	}
	// Integer part: groups 0..weight; the first without leading zeros.
	if weight < 0 {
		dst = append(dst, '0')
	} else {
		for i := 0; i <= weight; i++ {
			d := digit(i)
			if i == 0 {
				dst = appendDecimal(dst, int64(d))
				continue
			}
			dst = append(dst, byte('0'+d/1000), byte('0'+d/100%10), byte('0'+d/10%10), byte('0'+d%10))
		}
	}
	if dscale == 0 {
		return dst, nil
	}
	dst = append(dst, '.')
	for i, left := weight+1, dscale; left > 0; i++ {
		d := digit(i)
		four := [4]byte{byte('0' + d/1000), byte('0' + d/100%10), byte('0' + d/10%10), byte('0' + d%10)}
		n := min(left, 4)
		dst = append(dst, four[:n]...)
		left -= n
	}
	return dst, nil
}
