// Package schema maps PostgreSQL column types to Avro schemas, encodes row
// changes as Confluent-framed Avro (magic byte 0, 4-byte big-endian schema
// id, Avro binary) and registers schemas with a schema registry. It knows
// nothing of PostgreSQL connections or Kafka clients.
//
// # Encoding
//
// Values arrive in PostgreSQL's text output form, as pgoutput sends them with
// the session settings DateStyle='ISO, YMD', TimeZone=UTC,
// IntervalStyle=iso_8601, extra_float_digits=3 and bytea_output=hex. A Codec
// chooses one converter per column when it is built; AppendKey and
// AppendValue then write Avro binary by hand into the caller's buffer (zigzag
// varints, length-prefixed bytes, little-endian floats, union branch
// indexes), with no maps, reflection or allocation per row. hamba/avro only
// validates the generated schemas (and decodes in tests).
//
// # Type mapping
//
//	bool                          boolean
//	int2, int4                    int
//	int8, oid                     long
//	float4, float8                float, double (NaN and ±Infinity kept)
//	numeric(p,s)                  bytes, logical decimal(p,s): the unscaled value
//	                              as minimal big-endian two's complement; with
//	                              format.decimalHandling string: string
//	numeric                       string: the text form, NaN and ±Infinity included
//	json, jsonb                   string with connect.name io.debezium.data.Json
//	bytea                         bytes
//	uuid                          string, logical uuid
//	date                          int, logical date: days since 1970-01-01
//	time                          long, logical time-micros (24:00:00 included)
//	timestamp                     long, logical local-timestamp-micros
//	timestamptz                   long, logical timestamp-micros (UTC)
//	interval                      record io.pgkafka.Interval {months int,
//	                              days int, micros long}, the parts kept apart
//	arrays (Category 'A', Elem)   array of ["null", element type]
//	hstore (by name)              map of ["null","string"]
//	everything else               string holding the text form: text, varchar,
//	                              bpchar (padding kept), name, "char", citext,
//	                              xml, enums, money, timetz (with its offset),
//	                              bit, varbit, inet, cidr, macaddr, macaddr8,
//	                              tsvector, tsquery, ranges, multiranges,
//	                              point, line, lseg, box, path, polygon, circle,
//	                              composites, int2vector, oidvector and any
//	                              unknown type: never an error
//
// Domains arrive resolved to their base type.
//
// Decimals: NaN (and ±Infinity) have no Avro decimal. FormatConfig's
// nonFiniteDecimal chooses: "fail" (default) makes the value an error naming
// the table, the column and the keys to change; "null" writes null in a
// nullable column or an array element and is still an error in a non-nullable
// or key column. decimalHandling "string" writes every numeric as its text.
// Numeric scales Avro cannot express: a negative scale numeric(p,-s) is
// written as decimal(p+s, 0); a scale above the precision numeric(p,s), s>p,
// as decimal(s, s). The value is exact either way. Digits beyond the scale
// must be zeros; nothing is rounded.
//
// Intervals are parsed from IntervalStyle iso_8601 (P1Y2M3DT4H5M6.789S,
// P-1Y-2M3DT-4H-5M-6.789S, PT0S): years and months make months, days make
// days, hours, minutes and seconds make micros. PostgreSQL 17's 'infinity'
// and '-infinity' are every field at its maximum or minimum, as the server
// stores them. The one record definition is written at the first interval
// of a schema and referred to by name after, as Avro requires.
//
// Arrays are parsed from the array literal: braces, the element type's
// delimiter (',' except ';' for box), double quotes with backslash escapes,
// unquoted NULL for a null element ("NULL" quoted is the string). Elements go
// through the element type's converter. Multi-dimensional arrays are
// flattened in row-major order, the order PostgreSQL prints them and unnest
// returns them; dimensions and lower bounds ([0:2]={...}) are not carried.
//
// Hstore values are parsed from hstore's output ("a"=>"1", "b"=>NULL, with
// backslash escapes); the type is an extension's, found by its name since its
// OID differs between databases.
//
// Infinities: date 'infinity' and '-infinity' are written as math.MaxInt32 and
// math.MinInt32 days; timestamp and timestamptz 'infinity' and '-infinity' as
// math.MaxInt64 and math.MinInt64 microseconds. Dates and timestamps are
// proleptic Gregorian, BC years included (1 BC is year 0), years past 9999
// too. Timestamps beyond the range of int64 microseconds since 1970, after
// about 294247 AD (PostgreSQL allows up to 294276 AD), are errors naming the
// column.
//
// # JSON
//
// With FormatConfig.Encoding "json" a Codec writes each record as its Avro
// first, then rewrites it as Kafka Connect JsonConverter JSON (JSONForm,
// json.go): the same values in both encodings, no framing, nothing to
// register. jsonschema.go writes the Connect schema of schemas.enable.
//
// # Names
//
// Avro names must match [A-Za-z_][A-Za-z0-9_]*. Column names, and each part
// of the namespace, are sanitized by SanitizeName: every other character
// becomes '_', and a leading digit gets a '_' prefix. Two columns that
// sanitize to the same name (or, in the flat envelope, a column named __op,
// __lsn or __deleted) make NewCodec fail.
//
// # Records
//
// Keys are the record <ns>.Key of the key columns, never null. Values are
// Debezium's <ns>.Envelope {before, after, source, op, ts_ms, transaction}
// with the row record <ns>.Value and io.debezium.connector.postgresql.Source,
// or, with EnvelopeFlat, <ns>.Value with __op, __lsn and __deleted added.
// Nullable columns are ["null", T] with default null.
//
// Unchanged TOAST values (Datum.Unchanged) are written as Debezium's marker
// UnavailableValue in string columns, as its bytes in bytea columns, as a
// one-element array of the element's marker in arrays of those, and as a
// one-entry map (marker key, marker value) in hstore columns; other types
// return an error wrapping ErrUnavailable. In the before image of
// a delete, a null in a non-nullable column (a key-only replica identity sends
// nulls for the other columns) is written as the type's zero value: 0, "",
// empty bytes, false, the epoch, decimal 0, the nil UUID, a zero interval,
// an empty array or map. A null in a
// non-nullable column anywhere else is an error wrapping ErrNull.
package schema
