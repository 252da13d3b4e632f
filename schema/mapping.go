package schema

import "strconv"

// convFunc appends the Avro binary of one non-null value given in PostgreSQL
// text form. It is chosen once per column; its error names no column (the
// caller adds that).
type convFunc func(dst, text []byte) ([]byte, error)

// mapping is how one PostgreSQL type is written.
type mapping struct {
	avro string // Avro schema JSON of the non-null type, defining any named type it uses
	// named is the full name of the named type avro defines ("" if none);
	// avroRef is avro for a schema that has defined it already (Avro allows
	// one definition per name).
	named, avroRef string
	conv           convFunc // text form to Avro binary
	// bin is the binary (send format) form to the same Avro binary; nil
	// when pgkafka does not decode the type's binary form.
	bin         convFunc
	zero        []byte // Avro binary of the type's zero value
	unavailable []byte // Avro binary of the unavailable marker; nil: not representable
}

// schemaJSON returns the type's JSON for a schema whose named types so far
// are in defined, and records the ones it defines.
func (m *mapping) schemaJSON(defined map[string]bool) string {
	if m.named == "" {
		return m.avro
	}
	if defined[m.named] {
		return m.avroRef
	}
	defined[m.named] = true
	return m.avro
}

const nilUUID = "00000000-0000-0000-0000-000000000000"

var (
	stringMapping = mapping{
		avro:        `"string"`,
		conv:        convString,
		zero:        []byte{0},
		unavailable: appendString(nil, UnavailableValue),
	}
	zeroLong = []byte{0}
)

// Names of types written as their text form although PostgreSQL files them
// under the array category: their output is not an array literal.
func isVectorType(name string) bool { return name == "int2vector" || name == "oidvector" }

// mapType chooses the Avro type and converter of a PostgreSQL type (DESIGN §5).
// Types without a dedicated mapping are written as strings holding their text
// form, so no type fails.
func mapType(t Type, f format) mapping {
	if t.Category == 'A' && t.Elem != nil && !isVectorType(t.Name) {
		return arrayMapping(*t.Elem, f)
	}
	switch t.Name {
	case "bool":
		return mapping{avro: `"boolean"`, conv: convBool, zero: []byte{0}}
	case "int2":
		return mapping{avro: `"int"`, conv: convInt16, zero: zeroLong}
	case "int4":
		return mapping{avro: `"int"`, conv: convInt32, zero: zeroLong}
	case "int8":
		return mapping{avro: `"long"`, conv: convInt64, zero: zeroLong}
	case "oid":
		return mapping{avro: `"long"`, conv: convOID, zero: zeroLong}
	case "float4":
		return mapping{avro: `"float"`, conv: convFloat32, zero: make([]byte, 4)}
	case "float8":
		return mapping{avro: `"double"`, conv: convFloat64, zero: make([]byte, 8)}
	case "numeric":
		p, s, ok := numericTypmod(t.Typmod)
		if !ok || f.decimal == DecimalString {
			// Unconstrained numeric has no fixed scale: keep its text, NaN included.
			return stringMapping
		}
		p, s = avroDecimal(p, s)
		d := &decimalConv{precision: p, scale: s, nonFinite: f.nonFinite}
		return mapping{
			avro: `{"type":"bytes","logicalType":"decimal","precision":` + strconv.Itoa(p) +
				`,"scale":` + strconv.Itoa(s) + `}`,
			conv: d.append,
			zero: []byte{2, 0}, // one byte, 0x00
		}
	case "json", "jsonb":
		m := stringMapping
		m.avro = `{"type":"string","connect.name":"io.debezium.data.Json"}`
		return m
	case "bytea":
		return mapping{
			avro:        `"bytes"`,
			conv:        convBytea,
			zero:        []byte{0},
			unavailable: appendBytes(nil, []byte(UnavailableValue)),
		}
	case "uuid":
		return mapping{
			avro: `{"type":"string","logicalType":"uuid"}`,
			conv: convUUID,
			zero: appendString(nil, nilUUID),
		}
	case "date":
		return mapping{avro: `{"type":"int","logicalType":"date"}`, conv: convDate, zero: zeroLong}
	case "time":
		return mapping{avro: `{"type":"long","logicalType":"time-micros"}`, conv: convTime, zero: zeroLong}
	case "timestamp":
		return mapping{avro: `{"type":"long","logicalType":"local-timestamp-micros"}`, conv: convTimestamp, zero: zeroLong}
	case "timestamptz":
		return mapping{avro: `{"type":"long","logicalType":"timestamp-micros"}`, conv: convTimestamptz, zero: zeroLong}
	case "interval":
		return mapping{
			avro:    intervalSchema,
			named:   IntervalFullName,
			avroRef: `"` + IntervalFullName + `"`,
			conv:    convInterval,
			zero:    []byte{0, 0, 0},
		}
	case "hstore":
		// An extension type: its OID differs between databases, its name does not.
		return mapping{
			avro:        `{"type":"map","values":["null","string"]}`,
			conv:        convHstore,
			zero:        []byte{0},
			unavailable: hstoreUnavailable,
		}
	}
	// text, varchar, bpchar (padding kept), name, citext and every other
	// string-category type, xml, enums, money, timetz (with its offset),
	// bit, varbit, inet, cidr, macaddr, macaddr8, tsvector, tsquery, ranges,
	// multiranges, geometric types, composites, int2vector, oidvector and
	// any type not named above: their text form.
	return stringMapping
}

// arrayMapping maps an array of elem to an Avro array of ["null", elem's
// type]; multi-dimensional arrays are flattened in row-major order.
func arrayMapping(elem Type, f format) mapping {
	em := mapType(elem, f)
	delim := byte(',')
	if elem.Name == "box" {
		delim = ';' // the only built-in type whose typdelim is not ','
	}
	a := &arrayConv{elem: em.conv, delim: delim}
	m := mapping{
		avro: `{"type":"array","items":["null",` + em.avro + `]}`,
		conv: a.append,
		zero: []byte{0},
	}
	if em.named != "" {
		m.named = em.named
		m.avroRef = `{"type":"array","items":["null",` + em.avroRef + `]}`
	}
	if em.unavailable != nil {
		// One element: the element type's marker.
		m.unavailable = append(append([]byte{2, branch1}, em.unavailable...), 0)
	}
	return m
}

// colCodec is one column, ready to encode.
type colCodec struct {
	name     string // PostgreSQL column name
	field    string // Avro field name (sanitized)
	typ      string // PostgreSQL type name, for errors
	nullable bool
	def      string   // the field's default as JSON, "" for none (non-nullable fields)
	aliases  []string // the field's Avro aliases (sanitized former names)
	excluded bool     // Policy.Exclude: no field, nothing written
	mapping
}
