package schema

import (
	"fmt"
	"slices"
)

// Arrays arrive as PostgreSQL's array literal: braces, elements separated by
// the element type's delimiter, quoted with backslash escapes where needed,
// unquoted NULL for a null element (a quoted "NULL" is the string), and a
// dimension decoration when a lower bound is not 1:
//
//	{1,NULL,3}   {"a b","NULL","x\"y"}   {{1,2},{3,4}}   [0:2]={7,8,9}   {}
//
// They are written as Avro arrays of ["null", element] in the order
// PostgreSQL prints them: row-major, so a multi-dimensional array is
// flattened and its dimensions and lower bounds are not carried.

// arrayElem is one element of an array literal, raw still escaped.
type arrayElem struct {
	raw     []byte
	escaped bool // raw holds backslash escapes
	null    bool
}

// arrayScanner walks an array literal's elements without allocating.
type arrayScanner struct {
	text  []byte
	i     int
	delim byte
	depth int
	state uint8
}

const (
	afterOpen  = iota // after '{': an element, '{' or '}'
	afterItem         // after an element or '}': the delimiter or '}'
	afterDelim        // after the delimiter: an element or '{'
)

// start skips the dimension decoration and the first '{'.
func (s *arrayScanner) start() error {
	b := s.text
	if len(b) > 0 && b[0] == '[' {
		for s.i < len(b) && b[s.i] == '[' {
			s.i++
			for k := 0; k < 2; k++ {
				if s.i < len(b) && (b[s.i] == '-' || b[s.i] == '+') {
					s.i++
				}
				j := s.i
				for s.i < len(b) && b[s.i]-'0' <= 9 {
					s.i++
				}
				want := byte(':')
				if k == 1 {
					want = ']'
				}
				if s.i == j || s.i >= len(b) || b[s.i] != want {
					return errSyntax
				}
				s.i++
			}
		}
		if s.i >= len(b) || b[s.i] != '=' {
			return errSyntax
		}
		s.i++
	}
	if s.i >= len(b) || b[s.i] != '{' {
		return errSyntax
	}
	s.i++
	s.depth = 1
	s.state = afterOpen
	return nil
}

// next returns the next element, or done at the end of the literal.
func (s *arrayScanner) next() (el arrayElem, done bool, err error) {
	b := s.text
	for {
		if s.depth == 0 {
			if s.i != len(b) {
				return el, false, errSyntax
			}
			return el, true, nil
		}
		if s.i >= len(b) {
			return el, false, errSyntax
		}
		c := b[s.i]
		switch s.state {
		case afterItem:
			switch c {
			case s.delim:
				s.state = afterDelim
			case '}':
				s.depth--
			default:
				return el, false, errSyntax
			}
			s.i++
			continue
		case afterOpen, afterDelim:
			switch c {
			case '{':
				s.depth++
				s.state = afterOpen
				s.i++
				continue
			case '}':
				if s.state == afterDelim {
					return el, false, errSyntax
				}
				s.depth--
				s.state = afterItem
				s.i++
				continue
			}
		}
		s.state = afterItem
		if c == '"' {
			s.i++
			j := s.i
			for {
				if s.i >= len(b) {
					return el, false, errSyntax
				}
				if b[s.i] == '\\' {
					el.escaped = true
					s.i += 2
					continue
				}
				if b[s.i] == '"' {
					break
				}
				s.i++
			}
			el.raw = b[j:s.i:s.i]
			s.i++
			return el, false, nil
		}
		j := s.i
		for s.i < len(b) && b[s.i] != s.delim && b[s.i] != '}' {
			switch b[s.i] {
			case '{', '"':
				return el, false, errSyntax
			case '\\':
				el.escaped = true
				s.i++
				if s.i == len(b) {
					return el, false, errSyntax
				}
			}
			s.i++
		}
		el.raw = b[j:s.i:s.i]
		if len(el.raw) == 0 {
			return el, false, errSyntax
		}
		el.null = !el.escaped && string(el.raw) == "NULL"
		return el, false, nil
	}
}

// arrayConv writes an array literal as an Avro array.
type arrayConv struct {
	elem  convFunc
	delim byte
}

func (a *arrayConv) append(dst, text []byte) ([]byte, error) {
	n0 := len(dst)
	s := arrayScanner{text: text, delim: a.delim}
	if err := s.start(); err != nil {
		return dst, err
	}
	countAt := len(dst)
	dst = append(dst, 0) // the block count, fixed below; alone, the end of an empty array
	count := 0
	for {
		el, done, err := s.next()
		if err != nil {
			return dst[:n0], err
		}
		if done {
			break
		}
		count++
		if el.null {
			dst = append(dst, branch0)
			continue
		}
		mark := len(dst)
		dst, err = appendConv(append(dst, branch1), el.raw, el.escaped, a.elem)
		if err == errNonFiniteNull {
			dst = append(dst[:mark], branch0)
			continue
		}
		if err != nil {
			return dst[:n0], fmt.Errorf("element %d: %w", count, err)
		}
	}
	if count == 0 {
		return dst, nil
	}
	dst = putLong(dst, countAt, int64(count))
	return append(dst, 0), nil // end of blocks
}

// putLong replaces the one-byte placeholder at dst[at] by v's varint,
// shifting what follows when it needs more bytes.
func putLong(dst []byte, at int, v int64) []byte {
	var buf [10]byte
	w := len(appendLong(buf[:0], v))
	if w == 1 {
		dst[at] = buf[0]
		return dst
	}
	n := len(dst)
	dst = slices.Grow(dst, w-1)[:n+w-1]
	copy(dst[at+w:], dst[at+1:n])
	copy(dst[at:], buf[:w])
	return dst
}

// appendConv converts raw, unescaping it first when escaped. The unescaped
// text is built at the end of dst and the converted value moved down over
// it, so nothing is allocated beyond dst's growth.
func appendConv(dst, raw []byte, escaped bool, conv convFunc) ([]byte, error) {
	if !escaped {
		return conv(dst, raw)
	}
	n := len(dst)
	dst = slices.Grow(dst, len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			i++
		}
		dst = append(dst, raw[i])
	}
	m := len(dst)
	out, err := conv(dst, dst[n:m:m])
	if err != nil {
		return out[:n], err
	}
	k := copy(out[n:], out[m:])
	return out[:n+k], nil
}

// Hstore values arrive as hstore's output: "key"=>"value" pairs separated by
// ", ", keys and values double-quoted with backslash escapes, NULL unquoted:
//
//	"a"=>"1", "b"=>NULL, "q\"uote"=>"back\\slash"
//
// They are written as Avro maps of ["null","string"].

// hstoreUnavailable is a map holding the unavailable marker as its one key
// and value.
var hstoreUnavailable = append(append(append(append([]byte{2},
	appendString(nil, UnavailableValue)...), branch1), appendString(nil, UnavailableValue)...), 0)

// hstoreQuoted reads a double-quoted string at b[i:] and returns its raw
// contents, whether they hold escapes and the index after the closing quote.
func hstoreQuoted(b []byte, i int) (raw []byte, escaped bool, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, false, 0, false
	}
	i++
	j := i
	for i < len(b) {
		switch b[i] {
		case '\\':
			escaped = true
			i += 2
			continue
		case '"':
			return b[j:i:i], escaped, i + 1, true
		}
		i++
	}
	return nil, false, 0, false
}

func skipSpaces(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func convHstore(dst, text []byte) ([]byte, error) {
	n0 := len(dst)
	countAt := len(dst)
	dst = append(dst, 0)
	count := 0
	i := skipSpaces(text, 0)
	for i < len(text) {
		key, kesc, end, ok := hstoreQuoted(text, i)
		if !ok {
			return dst[:n0], errSyntax
		}
		i = skipSpaces(text, end)
		if i+1 >= len(text) || text[i] != '=' || text[i+1] != '>' {
			return dst[:n0], errSyntax
		}
		i = skipSpaces(text, i+2)
		var err error
		if dst, err = appendConv(dst, key, kesc, convString); err != nil {
			return dst[:n0], err
		}
		if i+4 <= len(text) && string(text[i:i+4]) == "NULL" {
			dst = append(dst, branch0)
			i += 4
		} else {
			val, vesc, end, ok := hstoreQuoted(text, i)
			if !ok {
				return dst[:n0], errSyntax
			}
			if dst, err = appendConv(append(dst, branch1), val, vesc, convString); err != nil {
				return dst[:n0], err
			}
			i = end
		}
		count++
		i = skipSpaces(text, i)
		if i < len(text) {
			if text[i] != ',' {
				return dst[:n0], errSyntax
			}
			if i = skipSpaces(text, i+1); i == len(text) {
				return dst[:n0], errSyntax
			}
		}
	}
	if count == 0 {
		return dst, nil
	}
	dst = putLong(dst, countAt, int64(count))
	return append(dst, 0), nil
}
