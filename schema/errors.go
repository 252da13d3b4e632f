package schema

import (
	"errors"
	"strconv"
)

var (
	// ErrNotRepresentable reports an event the chosen envelope cannot carry,
	// such as a truncate in the flat envelope.
	ErrNotRepresentable = errors.New("not representable in this envelope")
	// ErrUnavailable reports an unchanged TOAST value in a column whose Avro
	// type has no room for Debezium's unavailable-value marker.
	ErrUnavailable = errors.New("unchanged TOAST value unavailable")
	// ErrNull reports a null in a non-nullable column or in a key column.
	ErrNull = errors.New("null in a non-nullable column")
	// ErrKeyless reports AppendKey on a table without key columns; such
	// records take a null Kafka key (see Codec.Keyed).
	ErrKeyless = errors.New("table has no key columns")
	// ErrNoBinary reports a binary pgoutput value of a type pgkafka does not
	// decode in binary (see BinarySafe and BinaryKeyText).
	ErrNoBinary = errors.New("no binary decoding for this type: set source.advanced.pgoutputBinary: off (or auto) and restart")
)

// UnavailableValue is Debezium's marker for an unchanged TOAST value that
// could not be recovered, written in string columns (and as its bytes in bytea
// columns).
const UnavailableValue = "__debezium_unavailable_value"

// maxErrText bounds how much of an offending value an error quotes.
const maxErrText = 64

// ColumnError reports a value of one column that could not be encoded.
type ColumnError struct {
	Table  string // <schema>.<table>
	Column string // PostgreSQL column name
	Type   string // PostgreSQL type name, set with Text for parse errors
	Text   string // the offending text, truncated to about 64 bytes
	Parse  bool   // the error comes from parsing Text
	Err    error
}

func (e *ColumnError) Error() string {
	b := make([]byte, 0, 96+len(e.Text))
	b = append(b, "column "...)
	b = strconv.AppendQuote(b, e.Column)
	b = append(b, " of "...)
	b = append(b, e.Table...)
	b = append(b, ": "...)
	if e.Parse {
		b = append(b, "parsing "...)
		b = append(b, e.Type...)
		b = append(b, ' ')
		b = strconv.AppendQuote(b, e.Text)
		b = append(b, ": "...)
	}
	b = append(b, e.Err.Error()...)
	return string(b)
}

func (e *ColumnError) Unwrap() error { return e.Err }

// truncText copies at most maxErrText bytes of b, marking the cut.
func truncText(b []byte) string {
	if len(b) <= maxErrText {
		return string(b)
	}
	return string(b[:maxErrText]) + "..."
}
