package schema

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// Policy is what a column's values become before they are written
// (Debezium's column.exclude.list, column.mask.hash.v2.*,
// column.mask.with.N.chars and column.truncate.to.N.chars). Its zero value
// writes them as they are. At most one of its fields is set.
//
// Every image goes through the codec, so a policy holds for backfilled
// and streamed rows, before and after images, and unchanged TOASTed values
// once filled, alike. The unavailable-value marker of an unchanged value
// that could not be filled stays the marker.
type Policy struct {
	// Exclude leaves the column out of the value schema and the records.
	Exclude bool
	// Hash, "sha256" or "sha512", writes the lowercase hex digest of Salt
	// followed by the value's text form (PostgreSQL's output), as a string
	// field.
	Hash string
	Salt []byte
	// Mask, when positive, writes Mask asterisks in place of every non-null
	// value, as a string field.
	Mask int
	// Truncate, when TruncateSet, cuts string values (text, varchar,
	// bpchar, citext, name) to at most Truncate characters (runes); the
	// field keeps its type.
	Truncate    int
	TruncateSet bool
}

// Any reports whether p changes anything.
func (p Policy) Any() bool { return p.Exclude || p.Hash != "" || p.Mask > 0 || p.TruncateSet }

// HashAlgorithms are the algorithms of Policy.Hash.
var HashAlgorithms = []string{"sha256", "sha512"}

// ValidHash reports whether name is one of HashAlgorithms.
func ValidHash(name string) bool { return hashNew(name) != nil }

func hashNew(name string) func() hash.Hash {
	switch name {
	case "sha256":
		return sha256.New
	case "sha512":
		return sha512.New
	}
	return nil
}

// Truncatable reports whether Policy.Truncate applies to values of t: the
// string types whose text and binary forms are the same UTF-8 text.
func Truncatable(t Type) bool {
	if t.Category == 'A' {
		return false
	}
	switch t.Name {
	case "text", "varchar", "bpchar", "citext", "name":
		return true
	}
	return false
}

// HashedValue is the string Policy{Hash: algorithm, Salt: salt} writes for
// the value whose text form is text.
func HashedValue(algorithm string, salt, text []byte) string {
	return string(appendHashed(nil, hashNew(algorithm), salt, text))
}

func appendHashed(dst []byte, newHash func() hash.Hash, salt, text []byte) []byte {
	h := newHash()
	h.Write(salt)
	h.Write(text)
	var sum [sha512.Size]byte
	return hex.AppendEncode(dst, h.Sum(sum[:0]))
}

var errPolicyKey = errors.New("a key column takes no column policy")

// applyPolicy makes cc write its column as col.Policy says.
func applyPolicy(cc *colCodec, col *Column) error {
	p := col.Policy
	switch {
	case p.Exclude:
		cc.excluded = true
		return nil
	case p.Hash != "":
		newHash := hashNew(p.Hash)
		if newHash == nil {
			return fmt.Errorf("unknown hash algorithm %q: use sha256 or sha512", p.Hash)
		}
		salt, t := p.Salt, col.Type
		textual := func(dst, text []byte) ([]byte, error) {
			var buf [2 * sha512.Size]byte
			return appendString(dst, string(appendHashed(buf[:0], newHash, salt, text))), nil
		}
		m := stringMapping
		m.conv = textual
		m.bin = nil
		if BinaryKeyText(t) {
			// Binary pgoutput: hashed over the text PostgreSQL would print.
			m.bin = func(dst, b []byte) ([]byte, error) {
				text, err := AppendBinaryText(nil, t, b)
				if err != nil {
					return dst, err
				}
				return textual(dst, text)
			}
		}
		cc.mapping = m
	case p.Mask > 0:
		stars := make([]byte, p.Mask)
		for i := range stars {
			stars[i] = '*'
		}
		masked := appendString(nil, string(stars))
		m := stringMapping
		m.conv = func(dst, _ []byte) ([]byte, error) { return append(dst, masked...), nil }
		m.bin = m.conv
		cc.mapping = m
	case p.TruncateSet:
		if !Truncatable(col.Type) {
			return fmt.Errorf("truncate applies to text, varchar, bpchar, citext and name columns, not %s", col.Type.Name)
		}
		n := p.Truncate
		conv, bin := cc.conv, cc.bin
		cc.conv = func(dst, text []byte) ([]byte, error) { return conv(dst, truncateRunes(text, n)) }
		if bin != nil {
			cc.bin = func(dst, b []byte) ([]byte, error) { return bin(dst, truncateRunes(b, n)) }
		}
	default:
		return nil
	}
	cc.def = ""
	if col.HasDefault && !col.Nullable {
		cc.def, _ = defaultJSON(&cc.mapping, col.Default)
	}
	return nil
}

// truncateRunes returns the first n characters of the UTF-8 text b.
func truncateRunes(b []byte, n int) []byte {
	if len(b) <= n {
		return b // no more bytes than n: no more characters
	}
	for i := range string(b) {
		if n == 0 {
			return b[:i]
		}
		n--
	}
	return b
}
