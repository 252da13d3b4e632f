package schema

import "fmt"

// Type is a column's PostgreSQL type, domains already resolved to their base.
type Type struct {
	OID      uint32 // base type OID
	Name     string // pg_type.typname of the base type, e.g. "int4", "numeric", "_text", "mood"
	Category byte   // pg_type.typcategory, e.g. 'E' enum, 'A' array, 'S' string
	// Typmod is pg_attribute.atttypmod, -1 if none. For numeric it holds
	// precision ((typmod-4)>>16) and scale ((typmod-4)&0x7ff, sign-extended
	// since PostgreSQL 15).
	Typmod int32
	Elem   *Type // element type of an array, nil otherwise
}

// Column is one column of a captured table.
type Column struct {
	Name     string
	Type     Type
	Nullable bool
	// Default, when HasDefault, is the value PostgreSQL gives the rows
	// written before the column existed (pg_attribute.attmissingval: the
	// default of an ADD COLUMN, when it is not volatile), in text form. It
	// becomes the Avro field's default in non-nullable columns, so a reader
	// of the new schema reads older records with the value the table holds.
	Default    string
	HasDefault bool
	// Fallback, when HasFallback, is the column's constant default, in
	// text form (pg_attrdef), which a rewrite of the table keeps where it
	// drops the missing value: Registry.Inherit makes it the Default of a
	// non-nullable column new to the subject that has none, so that a
	// burst of DDL read after the rewrite still gives the new field the
	// value older rows hold.
	Fallback    string
	HasFallback bool
	// Aliases are former names of the column (a RENAME COLUMN), written as
	// the field's Avro aliases so readers resolve older records by them.
	Aliases []string
	// Policy is the column's policy (policy.go): excluded, hashed, masked
	// or truncated.
	Policy Policy
}

// Table describes a captured table and where its records go.
type Table struct {
	Topic string // Kafka topic; subjects are <Topic>-key and <Topic>-value
	// Namespace is the Avro namespace, "<topicPrefix>.<schema>.<table>". Each
	// dot-separated part is sanitized like a field name (see package doc).
	// Full names are <Namespace>.Key, .Value and .Envelope, as Debezium's.
	Namespace    string
	Schema, Name string // PostgreSQL schema and table, for the source block
	Columns      []Column
	// Key holds indexes into Columns of the key columns, in key order. Empty
	// means a keyless table: records get a null Kafka key.
	Key []int
	// KeyTag, when its Field is set, is a string field the key record ends
	// with, holding Value: the table a record comes from, when several
	// tables share a topic (Debezium's ByLogicalTableRouter), so that their
	// keys stay distinct. Only keyed tables carry it.
	KeyTag KeyTag
	// Subjects names the key and value subjects (the zero value: <Topic>-key
	// and <Topic>-value).
	Subjects SubjectNameStrategy
}

// KeyTag is a constant field of a key record.
type KeyTag struct {
	Field, Value string
}

func (t *Table) qualified() string { return t.Schema + "." + t.Name }

// Envelope selects the shape of record values.
type Envelope uint8

const (
	// EnvelopeDebezium is Debezium's {before, after, source, op, ts_ms, transaction}.
	EnvelopeDebezium Envelope = iota
	// EnvelopeFlat is the row's columns plus __op, __lsn and __deleted, as
	// Debezium's ExtractNewRecordState transform produces.
	EnvelopeFlat
)

// String returns the configuration spelling: "debezium" or "flat".
func (e Envelope) String() string {
	switch e {
	case EnvelopeDebezium:
		return "debezium"
	case EnvelopeFlat:
		return "flat"
	}
	return fmt.Sprintf("Envelope(%d)", uint8(e))
}

// ParseEnvelope parses "debezium" or "flat".
func ParseEnvelope(s string) (Envelope, error) {
	switch s {
	case "debezium":
		return EnvelopeDebezium, nil
	case "flat":
		return EnvelopeFlat, nil
	}
	return 0, fmt.Errorf("unknown envelope %q: want debezium or flat", s)
}

// Op is a change's operation, with Debezium's codes.
type Op byte

const (
	OpCreate   Op = 'c' // insert
	OpUpdate   Op = 'u'
	OpDelete   Op = 'd'
	OpRead     Op = 'r' // backfill read
	OpTruncate Op = 't'
)

// String returns the one-letter code.
func (o Op) String() string { return string(rune(o)) }

func (o Op) valid() bool {
	switch o {
	case OpCreate, OpUpdate, OpDelete, OpRead, OpTruncate:
		return true
	}
	return false
}

// Datum is one column's value in PostgreSQL text form, or in its type's
// binary send format when Binary is set (binary pgoutput; see BinarySafe).
//
// Text is read during the Append call only and never retained.
type Datum struct {
	Text []byte
	// Binary marks Text as the binary send format of the column's type.
	Binary bool
	Null   bool
	// Unchanged marks an unchanged TOAST value that pgoutput did not send.
	Unchanged bool
}

// Source holds the source-block fields that are constant during a run.
type Source struct {
	Version   string // version of pgkafka
	Connector string // "postgresql"
	Name      string // connector name
	DB        string // database name
}

// Event is one change of one row.
type Event struct {
	Op       Op
	Before   []Datum  // one per column, nil when absent
	After    []Datum  // one per column, nil when absent
	TsMs     int64    // source.ts_ms: commit time
	TxID     int64    // source.txId, <0 = null
	LSN      int64    // source.lsn, <0 = null
	Snapshot string   // source.snapshot: "false", "true", "last"; "" is "false"
	NowMs    int64    // envelope ts_ms (processing time)
	Tx       *TxBlock // the transaction block (txmeta.go); nil is null
}
