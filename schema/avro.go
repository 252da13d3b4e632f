package schema

import (
	"encoding/binary"
	"math"
)

// Avro binary encoding, written by hand into append buffers.
// See https://avro.apache.org/docs/1.11.1/specification/#binary-encoding.

// magicByte starts every Confluent-framed message, followed by the 4-byte
// big-endian schema id.
const magicByte = 0

// Union branch indexes, already zigzag-encoded: branch 0 is 0x00, 1 is 0x02.
const (
	branch0 = 0x00
	branch1 = 0x02
)

func appendLong(dst []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

func appendInt(dst []byte, v int32) []byte { return appendLong(dst, int64(v)) }

func appendBytes(dst, b []byte) []byte {
	dst = appendLong(dst, int64(len(b)))
	return append(dst, b...)
}

func appendString(dst []byte, s string) []byte {
	dst = appendLong(dst, int64(len(s)))
	return append(dst, s...)
}

func appendFloat(dst []byte, f float32) []byte {
	return binary.LittleEndian.AppendUint32(dst, math.Float32bits(f))
}

func appendDouble(dst []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f))
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// framing returns the Confluent wire-format header for a schema id.
func framing(id int) [5]byte {
	var h [5]byte
	h[0] = magicByte
	binary.BigEndian.PutUint32(h[1:], uint32(id))
	return h
}
