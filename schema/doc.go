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
//	                              as minimal big-endian two's complement; NaN and
//	                              ±Infinity are errors naming the column
//	numeric                       string: the text form, NaN included
//	json, jsonb                   string with connect.name io.debezium.data.Json
//	bytea                         bytes
//	uuid                          string, logical uuid
//	date                          int, logical date: days since 1970-01-01
//	time                          long, logical time-micros
//	timestamp                     long, logical local-timestamp-micros
//	timestamptz                   long, logical timestamp-micros (UTC)
//	everything else               string holding the text form: text, varchar,
//	                              bpchar (padding kept), name, citext, xml,
//	                              enums, timetz (with its offset), and for now
//	                              arrays, interval, inet, money, ranges...
//
// Numeric scales Avro cannot express: a negative scale numeric(p,-s) is
// written as decimal(p+s, 0); a scale above the precision numeric(p,s), s>p,
// as decimal(s, s). The value is exact either way. Digits beyond the scale
// must be zeros; nothing is rounded.
//
// Infinities: date 'infinity' and '-infinity' are written as math.MaxInt32 and
// math.MinInt32 days; timestamp and timestamptz 'infinity' and '-infinity' as
// math.MaxInt64 and math.MinInt64 microseconds. Dates and timestamps are
// proleptic Gregorian, BC years included (1 BC is year 0). Timestamps beyond
// the range of int64 microseconds since 1970, after about 294247 AD
// (PostgreSQL allows up to 294276 AD), are errors naming the column.
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
// UnavailableValue in string columns and as its bytes in bytea columns;
// other types return an error wrapping ErrUnavailable. In the before image of
// a delete, a null in a non-nullable column (a key-only replica identity sends
// nulls for the other columns) is written as the type's zero value: 0, "",
// empty bytes, false, the epoch, decimal 0, the nil UUID. A null in a
// non-nullable column anywhere else is an error wrapping ErrNull.
package schema
