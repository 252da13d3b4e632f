package schema

import (
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"math/bits"
	"strconv"
)

var (
	errSyntax = errors.New("invalid syntax")
	errRange  = errors.New("value out of range")
	errNaN    = errors.New("NaN or infinity cannot be written as an Avro decimal: set format.nonFiniteDecimal: null " +
		"to write null in nullable columns, or format.decimalHandling: string to write numerics as text")
	// errNonFiniteNull asks the caller to write null (format.nonFiniteDecimal:
	// null); it surfaces only where null cannot be written.
	errNonFiniteNull = errors.New("NaN or infinity cannot be written as an Avro decimal, and format.nonFiniteDecimal: null " +
		"does not apply to a non-nullable or key column: set format.decimalHandling: string to write numerics as text")
)

func convBool(dst, text []byte) ([]byte, error) {
	switch string(text) {
	case "t", "true":
		return append(dst, 1), nil
	case "f", "false":
		return append(dst, 0), nil
	}
	return dst, errSyntax
}

// parseInt parses a decimal integer within [lo, hi] (lo <= 0) without allocating.
func parseInt(text []byte, lo, hi int64) (int64, error) {
	i, neg := 0, false
	if len(text) > 0 && (text[0] == '-' || text[0] == '+') {
		neg = text[0] == '-'
		i = 1
	}
	if i == len(text) {
		return 0, errSyntax
	}
	var u uint64
	for ; i < len(text); i++ {
		c := text[i] - '0'
		if c > 9 {
			return 0, errSyntax
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, errRange
		}
		u = u*10 + uint64(c)
	}
	if neg {
		// uint64(-lo) is 1<<63 for math.MinInt64, as wanted.
		if u > uint64(-lo) {
			return 0, errRange
		}
		return -int64(u), nil
	}
	if u > uint64(hi) {
		return 0, errRange
	}
	return int64(u), nil
}

func convInt16(dst, text []byte) ([]byte, error) {
	v, err := parseInt(text, math.MinInt16, math.MaxInt16)
	return appendLong(dst, v), err
}

func convInt32(dst, text []byte) ([]byte, error) {
	v, err := parseInt(text, math.MinInt32, math.MaxInt32)
	return appendLong(dst, v), err
}

func convInt64(dst, text []byte) ([]byte, error) {
	v, err := parseInt(text, math.MinInt64, math.MaxInt64)
	return appendLong(dst, v), err
}

// convOID writes an unsigned 32-bit oid as a long.
func convOID(dst, text []byte) ([]byte, error) {
	if len(text) > 0 && text[0] == '-' {
		return dst, errRange
	}
	v, err := parseInt(text, 0, math.MaxUint32)
	return appendLong(dst, v), err
}

// The float parsers accept PostgreSQL's NaN, Infinity and -Infinity, which
// strconv spells the same way (case-insensitively).
func convFloat32(dst, text []byte) ([]byte, error) {
	f, err := strconv.ParseFloat(string(text), 32)
	if err != nil {
		return dst, errSyntax
	}
	return appendFloat(dst, float32(f)), nil
}

// canonicalNaN64 is the quiet NaN PostgreSQL and Java write (Go's math.NaN
// sets the lowest mantissa bit too).
const canonicalNaN64 = 0x7ff8000000000000

func convFloat64(dst, text []byte) ([]byte, error) {
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return dst, errSyntax
	}
	if f != f {
		return binary.LittleEndian.AppendUint64(dst, canonicalNaN64), nil
	}
	return appendDouble(dst, f), nil
}

// numericTypmod decodes numeric's atttypmod into precision and scale. Scale
// is an 11-bit signed field since PostgreSQL 15 (negative scales, scale >
// precision); older servers only store 0 <= scale <= precision, which decodes
// the same way.
func numericTypmod(typmod int32) (precision, scale int, ok bool) {
	if typmod < 4 {
		return 0, 0, false
	}
	t := typmod - 4
	precision = int(t>>16) & 0xffff
	scale = int(((t & 0x7ff) ^ 1024) - 1024)
	return precision, scale, precision > 0
}

// avroDecimal maps PostgreSQL's numeric(p,s) onto an Avro decimal, which
// needs 0 <= scale <= precision: a negative scale s becomes (p-s, 0), a scale
// above the precision becomes (s, s). Every value of the column fits.
func avroDecimal(p, s int) (precision, scale int) {
	switch {
	case s < 0:
		return p - s, 0
	case s > p:
		return s, s
	}
	return p, s
}

// decimalConv writes numeric text as an Avro decimal of a fixed scale.
type decimalConv struct {
	scale     int // Avro scale, >= 0
	precision int // Avro precision
	nonFinite NonFiniteDecimal
}

// maxInt64Digits is how many decimal digits always fit an int64; 38 always
// fit a signed 128-bit integer.
const (
	maxInt64Digits  = 18
	maxInt128Digits = 38
)

// appendDecimal writes text, rescaled to d.scale digits exactly, as the
// minimal big-endian two's-complement bytes of the unscaled value. Digits
// beyond the scale must be zeros: nothing is rounded.
func (d *decimalConv) append(dst, text []byte) ([]byte, error) {
	i, neg := 0, false
	if len(text) > 0 && (text[0] == '-' || text[0] == '+') {
		neg = text[0] == '-'
		i = 1
	}
	rest := text[i:]
	if len(rest) == 0 {
		return dst, errSyntax
	}
	switch rest[0] {
	case 'N', 'I', 'n', 'i':
		if d.nonFinite == NonFiniteNull {
			return dst, errNonFiniteNull
		}
		return dst, errNaN
	}
	// Split into integer and fraction digits.
	dot := -1
	for j, c := range rest {
		if c == '.' {
			if dot >= 0 {
				return dst, errSyntax
			}
			dot = j
			continue
		}
		if c-'0' > 9 {
			return dst, errSyntax
		}
	}
	intPart, frac := rest, rest[:0]
	if dot >= 0 {
		intPart, frac = rest[:dot], rest[dot+1:]
	}
	if len(intPart) == 0 && len(frac) == 0 {
		return dst, errSyntax
	}
	for len(intPart) > 0 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if len(frac) > d.scale {
		for _, c := range frac[d.scale:] {
			if c != '0' {
				return dst, errors.New("more fractional digits than the column's scale")
			}
		}
		frac = frac[:d.scale]
	}
	if len(intPart)+d.scale > d.precision {
		return dst, errors.New("more digits than the column's precision")
	}
	pad := d.scale - len(frac)
	ndigits := len(intPart) + d.scale
	switch {
	case ndigits <= maxInt64Digits:
		var v int64
		for _, c := range intPart {
			v = v*10 + int64(c-'0')
		}
		for _, c := range frac {
			v = v*10 + int64(c-'0')
		}
		for range pad {
			v *= 10
		}
		if neg {
			v = -v
		}
		return appendDecimal64(dst, v), nil
	case ndigits <= maxInt128Digits:
		var hi, lo uint64
		mul := func(c uint64) {
			h, l := bits.Mul64(lo, 10)
			var carry uint64
			lo, carry = bits.Add64(l, c, 0)
			hi = hi*10 + h + carry
		}
		for _, c := range intPart {
			mul(uint64(c - '0'))
		}
		for _, c := range frac {
			mul(uint64(c - '0'))
		}
		for range pad {
			mul(0)
		}
		if neg {
			lo, hi = ^lo, ^hi
			var c uint64
			lo, c = bits.Add64(lo, 1, 0)
			hi += c
		}
		return appendDecimal128(dst, hi, lo), nil
	}
	// Beyond 38 digits: rare enough to afford math/big.
	digits := make([]byte, 0, 1+ndigits)
	if neg {
		digits = append(digits, '-')
	}
	digits = append(digits, intPart...)
	digits = append(digits, frac...)
	for range pad {
		digits = append(digits, '0')
	}
	var v big.Int
	if _, ok := v.SetString(string(digits), 10); !ok {
		return dst, errSyntax
	}
	return appendBigDecimal(dst, &v), nil
}

// appendDecimal64 writes v as length-prefixed minimal two's-complement bytes.
func appendDecimal64(dst []byte, v int64) []byte {
	n := 8
	for n > 1 {
		// Drop a leading byte while the next one's top bit carries the sign.
		top := byte(v >> (8 * (n - 1)))
		next := byte(v >> (8 * (n - 2)))
		if (top == 0 && next&0x80 == 0) || (top == 0xff && next&0x80 != 0) {
			n--
			continue
		}
		break
	}
	dst = append(dst, byte(n<<1)) // zigzag of n <= 8 fits one byte
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

func appendDecimal128(dst []byte, hi, lo uint64) []byte {
	var b [16]byte
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	return appendBytes(dst, minimalTwos(b[:]))
}

// minimalTwos strips redundant sign bytes from big-endian two's complement.
func minimalTwos(b []byte) []byte {
	for len(b) > 1 {
		if (b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xff && b[1]&0x80 != 0) {
			b = b[1:]
			continue
		}
		break
	}
	return b
}

// appendBigDecimal writes v as Java's BigInteger.toByteArray does.
func appendBigDecimal(dst []byte, v *big.Int) []byte {
	if v.Sign() >= 0 {
		b := v.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return appendBytes(dst, b)
	}
	// Two's complement of a negative: invert the bits of |v|-1.
	m := new(big.Int).Neg(v)
	m.Sub(m, big.NewInt(1))
	b := m.Bytes()
	for i := range b {
		b[i] = ^b[i]
	}
	if len(b) == 0 || b[0]&0x80 == 0 {
		b = append([]byte{0xff}, b...)
	}
	return appendBytes(dst, b)
}
