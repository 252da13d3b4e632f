package schema

import (
	"encoding/hex"
	"errors"
	"slices"
)

// convString writes the text form unchanged as an Avro string.
func convString(dst, text []byte) ([]byte, error) {
	return appendBytes(dst, text), nil
}

var errBytea = errors.New(`want hex form \x...`)

// convBytea decodes bytea's hex output (\x0a0b...) straight into dst.
func convBytea(dst, text []byte) ([]byte, error) {
	if len(text) < 2 || text[0] != '\\' || text[1] != 'x' || len(text)%2 != 0 {
		return dst, errBytea
	}
	src := text[2:]
	n := len(src) / 2
	n0 := len(dst)
	dst = appendLong(dst, int64(n))
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	if _, err := hex.Decode(dst[start:], src); err != nil {
		return dst[:n0], errBytea
	}
	return dst, nil
}

// convUUID checks the canonical 8-4-4-4-12 form PostgreSQL prints.
func convUUID(dst, text []byte) ([]byte, error) {
	if len(text) != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-' ||
		!isHex(text[:8]) || !isHex(text[9:13]) || !isHex(text[14:18]) || !isHex(text[19:23]) || !isHex(text[24:]) {
		return dst, errSyntax
	}
	return appendBytes(dst, text), nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if c-'0' > 9 && (c|0x20)-'a' > 5 {
			return false
		}
	}
	return true
}
