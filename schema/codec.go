package schema

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
)

// Codec encodes the changes of one table, in one schema version, to
// Confluent-framed Avro. It is built once per table (and again after a schema
// change); its per-column converters are chosen at construction, so encoding
// does no lookups, reflection or allocation.
//
// After SetIDs a Codec is read-only: AppendKey and AppendValue may run
// concurrently.
type Codec struct {
	table     string // <schema>.<table>, for errors
	topic     string
	namespace string
	env       Envelope
	cols      []colCodec
	keyCols   []colCodec // copies of the key columns, never nullable
	key       []int
	keyTag    []byte // the key's tag field, Avro-encoded (Table.KeyTag); nil without one

	keySubject, valueSubject string

	keySchema, valueSchema string
	keyAvro, valueAvro     avro.Schema

	keyHdr, valueHdr [5]byte

	keyJSON, valueJSON *JSONForm // format.encoding json: the Avro rewritten (json.go)

	// Constant parts of the source block, pre-encoded.
	srcHead  []byte // version, connector, name
	srcDB    []byte // db, sequence (null)
	srcTable []byte // schema, table
}

// NewCodec builds the key and value schemas of t and its per-column
// converters, as the format block f says (its zero value: every default).
// Errors name the table and, where one is at fault, the column or the
// configuration key.
func NewCodec(t Table, f FormatConfig, src Source) (*Codec, error) {
	qual := t.qualified()
	ff, err := f.parse()
	if err != nil {
		return nil, fmt.Errorf("schema for %s: %w", qual, err)
	}
	env := ff.envelope
	if t.Topic == "" {
		return nil, fmt.Errorf("schema for %s: no topic", qual)
	}
	if t.Namespace == "" {
		return nil, fmt.Errorf("schema for %s: no Avro namespace", qual)
	}
	c := &Codec{
		table:     qual,
		topic:     t.Topic,
		namespace: SanitizeNamespace(t.Namespace),
		env:       env,
		cols:      make([]colCodec, len(t.Columns)),
		key:       append([]int(nil), t.Key...),
	}
	seen := make(map[string]string, len(t.Columns)+3)
	if env == EnvelopeFlat {
		for _, f := range []string{flatOp, flatLSN, flatDeleted} {
			seen[f] = "the flat envelope's " + f
		}
	}
	for i, col := range t.Columns {
		field := SanitizeName(col.Name)
		if other, dup := seen[field]; dup {
			return nil, fmt.Errorf("schema for %s: column %q: Avro field name %q already taken by %s", qual, col.Name, field, other)
		}
		seen[field] = fmt.Sprintf("column %q", col.Name)
		cc := colCodec{
			name:     col.Name,
			field:    field,
			typ:      col.Type.Name,
			nullable: col.Nullable,
			mapping:  mapType(col.Type, ff),
		}
		cc.bin = binaryConv(col.Type, ff)
		if col.HasDefault && !col.Nullable {
			cc.def, _ = defaultJSON(&cc.mapping, col.Default) // "" when Avro cannot hold it
		}
		for _, a := range col.Aliases {
			if a := SanitizeName(a); a != field && !slices.Contains(cc.aliases, a) {
				cc.aliases = append(cc.aliases, a)
			}
		}
		if err := applyPolicy(&cc, &col); err != nil {
			return nil, fmt.Errorf("schema for %s: column %q: %w", qual, col.Name, err)
		}
		c.cols[i] = cc
	}
	inKey := make(map[int]bool, len(t.Key))
	for _, k := range t.Key {
		if k < 0 || k >= len(t.Columns) {
			return nil, fmt.Errorf("schema for %s: key column index %d out of range [0,%d)", qual, k, len(t.Columns))
		}
		if inKey[k] {
			return nil, fmt.Errorf("schema for %s: column %q twice in the key", qual, t.Columns[k].Name)
		}
		inKey[k] = true
		if t.Columns[k].Policy.Any() {
			return nil, fmt.Errorf("schema for %s: column %q: %w", qual, t.Columns[k].Name, errPolicyKey)
		}
		kc := c.cols[k]
		kc.nullable = false
		c.keyCols = append(c.keyCols, kc)
	}

	if c.Keyed() {
		var tag []string
		if f := t.KeyTag.Field; f != "" {
			field := SanitizeName(f)
			for _, kc := range c.keyCols {
				if kc.field == field {
					return nil, fmt.Errorf("schema for %s: key field %q of the table's records is also a key column's", qual, field)
				}
			}
			var b strings.Builder
			b.WriteString(`{"name":`)
			jsonString(&b, field)
			b.WriteString(`,"type":"string"}`)
			tag = append(tag, b.String())
			c.keyTag = appendString(nil, t.KeyTag.Value)
		}
		c.keySchema = keySchema(c.namespace, c.keyCols, tag...)
	}
	c.keySubject, c.valueSubject = t.Subjects.Subjects(t.Topic, t.Namespace, env)
	switch env {
	case EnvelopeDebezium:
		c.valueSchema = debeziumValueSchema(c.namespace, c.cols)
	case EnvelopeFlat:
		c.valueSchema = flatValueSchema(c.namespace, c.cols)
	}
	// A private cache: schemas of other tables or versions never interfere.
	cache := &avro.SchemaCache{}
	if c.keySchema != "" {
		if c.keyAvro, err = avro.ParseWithCache(c.keySchema, "", cache); err != nil {
			return nil, fmt.Errorf("schema for %s: key schema invalid: %w", qual, err)
		}
	}
	if c.valueAvro, err = avro.ParseWithCache(c.valueSchema, "", cache); err != nil {
		return nil, fmt.Errorf("schema for %s: value schema invalid: %w", qual, err)
	}

	if ff.encoding == EncodingJSON {
		if err := c.initJSON(ff.schemas); err != nil {
			return nil, fmt.Errorf("schema for %s: %w", qual, err)
		}
	}
	c.srcHead = appendString(c.srcHead, src.Version)
	c.srcHead = appendString(c.srcHead, src.Connector)
	c.srcHead = appendString(c.srcHead, src.Name)
	c.srcDB = appendString(c.srcDB, src.DB)
	c.srcDB = append(c.srcDB, branch0) // sequence: null
	c.srcTable = appendString(c.srcTable, t.Schema)
	c.srcTable = appendString(c.srcTable, t.Name)
	c.SetIDs(0, 0)
	return c, nil
}

// Topic returns the table's Kafka topic.
func (c *Codec) Topic() string { return c.topic }

// KeySubject returns the key's registry subject (Table.Subjects; by
// default <topic>-key, Confluent's TopicNameStrategy).
func (c *Codec) KeySubject() string { return c.keySubject }

// ValueSubject returns the value's registry subject (by default
// <topic>-value).
func (c *Codec) ValueSubject() string { return c.valueSubject }

// KeySchema returns the key schema JSON, "" for a keyless table.
func (c *Codec) KeySchema() string { return c.keySchema }

// ValueSchema returns the value schema JSON.
func (c *Codec) ValueSchema() string { return c.valueSchema }

// KeyAvro returns the parsed key schema, nil for a keyless table, for
// decoding and compatibility checks.
func (c *Codec) KeyAvro() avro.Schema { return c.keyAvro }

// ValueAvro returns the parsed value schema.
func (c *Codec) ValueAvro() avro.Schema { return c.valueAvro }

// Envelope returns the value envelope.
func (c *Codec) Envelope() Envelope { return c.env }

// SetIDs sets the registry ids written in the Confluent framing. Call it
// before the Codec is shared between goroutines.
func (c *Codec) SetIDs(keyID, valueID int) {
	c.keyHdr = framing(keyID)
	c.valueHdr = framing(valueID)
}

// Keyed reports whether the table has key columns. Records of a keyless
// table take a null Kafka key.
func (c *Codec) Keyed() bool { return len(c.key) > 0 }

// Unavailable tells how column i (in row order) takes an unchanged TOAST
// value that could not be recovered: markable when its type carries the
// unavailable-value marker, nullable when it may be null instead.
func (c *Codec) Unavailable(i int) (markable, nullable bool) {
	cc := &c.cols[i]
	return cc.unavailable != nil, cc.nullable
}

// AppendKey appends the Confluent-framed key record (with format.encoding
// json, its JSON form) built from row[Key[i]].
// row holds one Datum per column. On error dst is returned unchanged.
func (c *Codec) AppendKey(dst []byte, row []Datum) ([]byte, error) {
	n := len(dst)
	dst, err := c.appendKey(dst, row)
	if err != nil || c.keyJSON == nil {
		return dst, err
	}
	return c.rewriteJSON(c.keyJSON, "key", dst, n)
}

func (c *Codec) appendKey(dst []byte, row []Datum) ([]byte, error) {
	if !c.Keyed() {
		return dst, fmt.Errorf("key of %s: %w", c.table, ErrKeyless)
	}
	if len(row) != len(c.cols) {
		return dst, c.rowLenErr("key", len(row))
	}
	n := len(dst)
	dst = append(dst, c.keyHdr[:]...)
	for i, k := range c.key {
		cc := &c.keyCols[i]
		d := &row[k]
		switch {
		case d.Unchanged:
			return dst[:n], c.colErr(cc, fmt.Errorf("key column without its value: %w", ErrUnavailable))
		case d.Null:
			return dst[:n], c.colErr(cc, fmt.Errorf("key column: %w", ErrNull))
		}
		conv := cc.conv
		if d.Binary {
			if conv = cc.bin; conv == nil {
				return dst[:n], c.colErr(cc, fmt.Errorf("binary %s: %w", cc.typ, ErrNoBinary))
			}
		}
		var err error
		if dst, err = conv(dst, d.Text); err != nil {
			return dst[:n], c.parseErr(cc, d, err)
		}
	}
	return append(dst, c.keyTag...), nil
}

// AppendValue appends the Confluent-framed value record of ev (with
// format.encoding json, its JSON form). On error dst
// is returned unchanged.
//
// Debezium envelope: before and after as given (nil is null; a truncate
// writes both null), the source block, op, ts_ms and the transaction block
// (null when ev.Tx is nil).
// Flat envelope: the after image (the before image for deletes, with
// __deleted "true"); a truncate returns ErrNotRepresentable.
//
// In the before image of a delete, a null in a non-nullable column (what a
// key-only replica identity sends for non-key columns) is written as the
// type's zero value; anywhere else it is an ErrNull error.
func (c *Codec) AppendValue(dst []byte, ev *Event) ([]byte, error) {
	n := len(dst)
	dst, err := c.appendValue(dst, ev)
	if err != nil || c.valueJSON == nil {
		return dst, err
	}
	return c.rewriteJSON(c.valueJSON, "value", dst, n)
}

func (c *Codec) appendValue(dst []byte, ev *Event) ([]byte, error) {
	if !ev.Op.valid() {
		return dst, fmt.Errorf("value of %s: unknown op %q", c.table, byte(ev.Op))
	}
	n := len(dst)
	var err error
	if c.env == EnvelopeFlat {
		dst, err = c.appendFlat(dst, ev)
	} else {
		dst, err = c.appendDebezium(dst, ev)
	}
	if err != nil {
		return dst[:n], err
	}
	return dst, nil
}

func (c *Codec) appendDebezium(dst []byte, ev *Event) ([]byte, error) {
	before, after := ev.Before, ev.After
	switch ev.Op {
	case OpTruncate:
		before, after = nil, nil
	case OpDelete:
		if before == nil {
			return dst, c.imageErr(ev.Op, "before")
		}
	default:
		if after == nil {
			return dst, c.imageErr(ev.Op, "after")
		}
	}
	dst = append(dst, c.valueHdr[:]...)
	var err error
	if dst, err = c.appendImage(dst, before, ev.Op == OpDelete); err != nil {
		return dst, err
	}
	if dst, err = c.appendImage(dst, after, false); err != nil {
		return dst, err
	}
	// source
	dst = append(dst, c.srcHead...)
	dst = appendLong(dst, ev.TsMs)
	dst = append(dst, branch0) // snapshot: the string branch
	if ev.Snapshot == "" {
		dst = appendString(dst, "false")
	} else {
		dst = appendString(dst, ev.Snapshot)
	}
	dst = append(dst, c.srcDB...)
	dst = append(dst, c.srcTable...)
	dst = appendOptLong(dst, ev.TxID)
	dst = appendOptLong(dst, ev.LSN)
	dst = append(dst, branch0) // xmin: null
	// op, ts_ms, transaction
	dst = append(dst, 2, byte(ev.Op))
	dst = append(dst, branch1)
	dst = appendLong(dst, ev.NowMs)
	return appendTxBlock(dst, ev.Tx), nil
}

func (c *Codec) appendFlat(dst []byte, ev *Event) ([]byte, error) {
	row, deleted, image := ev.After, "false", "after"
	switch ev.Op {
	case OpTruncate:
		return dst, fmt.Errorf("value of %s: truncate: %w", c.table, ErrNotRepresentable)
	case OpDelete:
		row, deleted, image = ev.Before, "true", "before"
	}
	if row == nil {
		return dst, c.imageErr(ev.Op, image)
	}
	dst = append(dst, c.valueHdr[:]...)
	var err error
	if dst, err = c.appendRow(dst, row, ev.Op == OpDelete); err != nil {
		return dst, err
	}
	dst = append(dst, 2, byte(ev.Op))
	dst = appendOptLong(dst, ev.LSN)
	return appendString(dst, deleted), nil
}

// appendImage writes a ["null", Value] union; a nil image is null.
func (c *Codec) appendImage(dst []byte, img []Datum, zeroNulls bool) ([]byte, error) {
	if img == nil {
		return append(dst, branch0), nil
	}
	return c.appendRow(append(dst, branch1), img, zeroNulls)
}

// appendOptLong writes a ["null","long"] union; negative is null.
func appendOptLong(dst []byte, v int64) []byte {
	if v < 0 {
		return append(dst, branch0)
	}
	return appendLong(append(dst, branch1), v)
}

// appendRow writes the Value record of one row image.
func (c *Codec) appendRow(dst []byte, row []Datum, zeroNulls bool) ([]byte, error) {
	if len(row) != len(c.cols) {
		return dst, c.rowLenErr("value", len(row))
	}
	for i := range c.cols {
		cc := &c.cols[i]
		d := &row[i]
		switch {
		case cc.excluded:
			continue
		case d.Unchanged:
			if cc.unavailable == nil {
				return dst, c.colErr(cc, fmt.Errorf("type %s cannot carry the unavailable-value marker: %w", cc.typ, ErrUnavailable))
			}
			if cc.nullable {
				dst = append(dst, branch1)
			}
			dst = append(dst, cc.unavailable...)
			continue
		case d.Null:
			switch {
			case cc.nullable:
				dst = append(dst, branch0)
			case zeroNulls:
				dst = append(dst, cc.zero...)
			default:
				return dst, c.colErr(cc, ErrNull)
			}
			continue
		}
		mark := len(dst)
		if cc.nullable {
			dst = append(dst, branch1)
		}
		conv := cc.conv
		if d.Binary {
			if conv = cc.bin; conv == nil {
				return dst, c.colErr(cc, fmt.Errorf("binary %s: %w", cc.typ, ErrNoBinary))
			}
		}
		var err error
		if dst, err = conv(dst, d.Text); err != nil {
			if err == errNonFiniteNull && cc.nullable {
				// format.nonFiniteDecimal: null
				dst = append(dst[:mark], branch0)
				continue
			}
			return dst, c.parseErr(cc, d, err)
		}
	}
	return dst, nil
}

func (c *Codec) colErr(cc *colCodec, err error) error {
	return &ColumnError{Table: c.table, Column: cc.name, Type: cc.typ, Err: err}
}

func (c *Codec) parseErr(cc *colCodec, d *Datum, err error) error {
	text := truncText(d.Text)
	if d.Binary {
		text = fmt.Sprintf("binary %x", d.Text[:min(len(d.Text), maxErrText/2)])
	}
	return &ColumnError{Table: c.table, Column: cc.name, Type: cc.typ, Text: text, Parse: true, Err: err}
}

func (c *Codec) rowLenErr(what string, got int) error {
	return fmt.Errorf("%s of %s: row has %d values, table has %d columns", what, c.table, got, len(c.cols))
}

func (c *Codec) imageErr(op Op, image string) error {
	return fmt.Errorf("value of %s: %s event without its %s image", c.table, op, image)
}

// DecodeValue decodes a value this codec encoded (Confluent-framed) into
// hamba/avro's generic form, for comparing records by their values.
func (c *Codec) DecodeValue(framed []byte) (any, error) {
	if len(framed) < 5 {
		return nil, fmt.Errorf("value of %s: %d bytes, shorter than the framing", c.table, len(framed))
	}
	var v any
	if err := avro.Unmarshal(c.valueAvro, framed[5:], &v); err != nil {
		return nil, fmt.Errorf("value of %s: %w", c.table, err)
	}
	return v, nil
}

// DecodeKey decodes a key record (unframed) into its fields' names and
// generic values, in the key's field order.
func (c *Codec) DecodeKey(key []byte) (names []string, values []any, err error) {
	rec, ok := c.keyAvro.(*avro.RecordSchema)
	if !ok {
		return nil, nil, fmt.Errorf("key of %s: %w", c.table, ErrKeyless)
	}
	var v map[string]any
	if err := avro.Unmarshal(c.keyAvro, key, &v); err != nil {
		return nil, nil, fmt.Errorf("key of %s: %w", c.table, err)
	}
	for _, f := range rec.Fields() {
		names = append(names, f.Name())
		values = append(values, v[f.Name()])
	}
	return names, values, nil
}
