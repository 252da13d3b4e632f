package schema

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// JSON encoding (format.encoding: json): Kafka Connect's JsonConverter form
// of the very records the Avro path writes. A JSONForm is derived from one
// Avro schema when a codec is built; it rewrites a Confluent-framed Avro
// record of that schema as JSON, in the caller's buffer, walking a tree of
// nodes chosen at construction: no reflection, no maps, no allocation per
// record. Writing the Avro first and rewriting it keeps one converter per
// PostgreSQL type for both encodings, so both carry the same values.
//
// Values (Connect's JsonConverter conventions):
//
//	boolean                 true, false
//	int, long               numbers (every logical type: date days,
//	                        time and timestamp micros)
//	float, double           numbers, shortest round-trip form; NaN and
//	                        ±Infinity as the strings "NaN", "Infinity",
//	                        "-Infinity" (what Jackson writes by default)
//	string                  JSON strings (invalid UTF-8 becomes U+FFFD)
//	bytes, decimal          base64 (standard, padded): bytea's bytes, a
//	                        decimal's unscaled two's complement
//	["null", T]             null or T's JSON: unions are not wrapped
//	record                  object of its fields, in schema order
//	array                   array
//	map                     object
//
// With schemas (format.jsonSchemas, Connect's schemas.enable) every record is
// {"schema": <Connect schema>, "payload": <value>}, without it the value
// alone.
type JSONForm struct {
	root   *jsonNode
	prefix []byte // `{"schema":...,"payload":`, nil without schemas
}

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonInt // int and long: the same zigzag varint
	jsonFloat
	jsonDouble
	jsonStr
	jsonByt
	jsonRecord
	jsonArray
	jsonMap
	jsonUnion
)

type jsonNode struct {
	kind     jsonKind
	elem     *jsonNode   // array items, map values
	fields   []jsonField // record
	branches []*jsonNode // union
}

type jsonField struct {
	name []byte // `"name":`, with the leading ',' for all but the first
	node *jsonNode
}

var errJSONShort = errors.New("avro record ends early")

// NewJSONForm returns the JSON form of Avro schema s, with the Connect
// schema before each payload when schemas is true.
func NewJSONForm(s avro.Schema, schemas bool) (*JSONForm, error) {
	records := map[string]*jsonNode{}
	root, err := jsonNodeOf(s, records)
	if err != nil {
		return nil, err
	}
	j := &JSONForm{root: root}
	if schemas {
		j.prefix = append([]byte(`{"schema":`), connectSchema(s, false, "")...)
		j.prefix = append(j.prefix, `,"payload":`...)
	}
	return j, nil
}

func jsonNodeOf(s avro.Schema, records map[string]*jsonNode) (*jsonNode, error) {
	switch s := s.(type) {
	case *avro.RefSchema:
		return jsonNodeOf(s.Schema(), records)
	case *avro.NullSchema:
		return &jsonNode{kind: jsonNull}, nil
	case *avro.PrimitiveSchema:
		switch s.Type() {
		case avro.Boolean:
			return &jsonNode{kind: jsonBool}, nil
		case avro.Int, avro.Long:
			return &jsonNode{kind: jsonInt}, nil
		case avro.Float:
			return &jsonNode{kind: jsonFloat}, nil
		case avro.Double:
			return &jsonNode{kind: jsonDouble}, nil
		case avro.String:
			return &jsonNode{kind: jsonStr}, nil
		case avro.Bytes:
			return &jsonNode{kind: jsonByt}, nil
		}
	case *avro.RecordSchema:
		if n := records[s.FullName()]; n != nil {
			return n, nil
		}
		n := &jsonNode{kind: jsonRecord}
		records[s.FullName()] = n
		for i, f := range s.Fields() {
			fn, err := jsonNodeOf(f.Type(), records)
			if err != nil {
				return nil, err
			}
			var name []byte
			if i > 0 {
				name = append(name, ',')
			}
			name = appendJSONString(name, []byte(f.Name()))
			n.fields = append(n.fields, jsonField{name: append(name, ':'), node: fn})
		}
		return n, nil
	case *avro.ArraySchema:
		e, err := jsonNodeOf(s.Items(), records)
		return &jsonNode{kind: jsonArray, elem: e}, err
	case *avro.MapSchema:
		e, err := jsonNodeOf(s.Values(), records)
		return &jsonNode{kind: jsonMap, elem: e}, err
	case *avro.UnionSchema:
		n := &jsonNode{kind: jsonUnion}
		for _, t := range s.Types() {
			b, err := jsonNodeOf(t, records)
			if err != nil {
				return nil, err
			}
			n.branches = append(n.branches, b)
		}
		return n, nil
	}
	return nil, fmt.Errorf("no JSON form for Avro type %s", s.Type())
}

// Rewrite replaces the Confluent-framed Avro record in dst[n:] by its JSON
// and returns the buffer. On error dst is returned as dst[:n].
func (j *JSONForm) Rewrite(dst []byte, n int) ([]byte, error) {
	end := len(dst)
	if end-n < 5 {
		return dst[:n], errJSONShort
	}
	out := append(dst, j.prefix...)
	out, rest, err := j.root.write(out, out[n+5:end])
	if err != nil {
		return dst[:n], err
	}
	if len(rest) != 0 {
		return dst[:n], fmt.Errorf("%d bytes after the avro record", len(rest))
	}
	if j.prefix != nil {
		out = append(out, '}')
	}
	m := copy(out[n:], out[end:])
	return out[:n+m], nil
}

// write appends the JSON of the Avro value at the start of src and returns
// the bytes after it.
func (j *jsonNode) write(dst, src []byte) ([]byte, []byte, error) {
	switch j.kind {
	case jsonNull:
		return append(dst, "null"...), src, nil
	case jsonBool:
		if len(src) < 1 {
			return dst, src, errJSONShort
		}
		if src[0] != 0 {
			return append(dst, "true"...), src[1:], nil
		}
		return append(dst, "false"...), src[1:], nil
	case jsonInt:
		v, rest, err := readAvroLong(src)
		return strconv.AppendInt(dst, v, 10), rest, err
	case jsonFloat:
		if len(src) < 4 {
			return dst, src, errJSONShort
		}
		f := math.Float32frombits(binary.LittleEndian.Uint32(src))
		return appendJSONFloat(dst, float64(f), 32), src[4:], nil
	case jsonDouble:
		if len(src) < 8 {
			return dst, src, errJSONShort
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(src))
		return appendJSONFloat(dst, f, 64), src[8:], nil
	case jsonStr, jsonByt:
		b, rest, err := readAvroBytes(src)
		if err != nil {
			return dst, src, err
		}
		if j.kind == jsonStr {
			return appendJSONString(dst, b), rest, nil
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"'), rest, nil
	case jsonRecord:
		dst = append(dst, '{')
		var err error
		for i := range j.fields {
			f := &j.fields[i]
			dst = append(dst, f.name...)
			if dst, src, err = f.node.write(dst, src); err != nil {
				return dst, src, err
			}
		}
		return append(dst, '}'), src, nil
	case jsonUnion:
		b, rest, err := readAvroLong(src)
		if err != nil {
			return dst, src, err
		}
		if b < 0 || b >= int64(len(j.branches)) {
			return dst, src, fmt.Errorf("union branch %d out of range", b)
		}
		return j.branches[b].write(dst, rest)
	case jsonArray, jsonMap:
		open, close := byte('['), byte(']')
		if j.kind == jsonMap {
			open, close = '{', '}'
		}
		dst = append(dst, open)
		first := true
		for {
			count, rest, err := readAvroLong(src)
			if err != nil {
				return dst, src, err
			}
			src = rest
			if count == 0 {
				return append(dst, close), src, nil
			}
			if count < 0 { // a block byte size follows
				count = -count
				if _, src, err = readAvroLong(src); err != nil {
					return dst, src, err
				}
			}
			for range count {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				if j.kind == jsonMap {
					k, rest, err := readAvroBytes(src)
					if err != nil {
						return dst, src, err
					}
					dst = append(appendJSONString(dst, k), ':')
					src = rest
				}
				if dst, src, err = j.elem.write(dst, src); err != nil {
					return dst, src, err
				}
			}
		}
	}
	return dst, src, fmt.Errorf("unknown JSON node kind %d", j.kind)
}

func readAvroLong(src []byte) (int64, []byte, error) {
	var u uint64
	for i, shift := 0, uint(0); i < len(src) && shift < 64; i, shift = i+1, shift+7 {
		b := src[i]
		u |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return int64(u>>1) ^ -int64(u&1), src[i+1:], nil
		}
	}
	return 0, src, errJSONShort
}

func readAvroBytes(src []byte) ([]byte, []byte, error) {
	n, rest, err := readAvroLong(src)
	if err != nil {
		return nil, src, err
	}
	if n < 0 || n > int64(len(rest)) {
		return nil, src, errJSONShort
	}
	return rest[:n], rest[n:], nil
}

// appendJSONFloat writes f in its shortest round-trip form, or NaN and
// ±Infinity as strings, which JSON has no numbers for.
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// appendJSONString writes s quoted: '"', '\\' and control characters
// escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// initJSON derives the JSON forms of c's key and value schemas.
func (c *Codec) initJSON(schemas bool) error {
	var err error
	if c.keyAvro != nil {
		if c.keyJSON, err = NewJSONForm(c.keyAvro, schemas); err != nil {
			return fmt.Errorf("key JSON: %w", err)
		}
	}
	if c.valueJSON, err = NewJSONForm(c.valueAvro, schemas); err != nil {
		return fmt.Errorf("value JSON: %w", err)
	}
	return nil
}

// JSON reports whether c writes JSON (format.encoding json): its records
// carry no registry id and it registers nothing.
func (c *Codec) JSON() bool { return c.valueJSON != nil }

func (c *Codec) rewriteJSON(j *JSONForm, what string, dst []byte, n int) ([]byte, error) {
	out, err := j.Rewrite(dst, n)
	if err != nil {
		return out, fmt.Errorf("%s of %s as JSON: %w", what, c.table, err)
	}
	return out, nil
}

// NewJSONForms returns the JSON forms of a key and a value schema as f says
// (format.encoding, format.jsonSchemas), for records that do not go through
// a Codec (transaction metadata, logical decoding messages): both nil under
// Avro.
func NewJSONForms(f *FormatConfig, key, value avro.Schema) (k, v *JSONForm, err error) {
	if !f.JSON() {
		return nil, nil, nil
	}
	if k, err = NewJSONForm(key, f.JSONSchemasOn()); err != nil {
		return nil, nil, err
	}
	v, err = NewJSONForm(value, f.JSONSchemasOn())
	return k, v, err
}
