package pgsrc

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// ErrStaleKeyOrder: a key holds a value the KeyOrder was not built to know,
// an enum label added after the table was described. Describe the table
// again and build a new KeyOrder.
var ErrStaleKeyOrder = errors.New("key order is stale")

// keyKind is how a key column's text values compare.
type keyKind uint8

const (
	keyInt         keyKind = iota + 1 // int2, int4, int8, oid
	keyNumeric                        // numeric
	keyText                           // text-like, byte order (COLLATE "C")
	keyBpchar                         // bpchar: byte order, trailing spaces ignored
	keyUUID                           // uuid: byte order of the lowercase text
	keyBool                           // bool: f < t
	keyDate                           // date
	keyTimestamp                      // timestamp
	keyTimestamptz                    // timestamptz
	keyCIText                         // citext: byte order of the ASCII-lowercased text
	keyEnum                           // enum, by label order
)

// keyColumn is one column of a KeyOrder.
type keyColumn struct {
	name    string
	typ     string // the type as format_type prints it, for messages
	kind    keyKind
	collate bool           // the SQL compares it with COLLATE "C"
	labels  map[string]int // enum labels to their sort position
	plan    pgtype.ScanPlan
}

// KeyOrder compares key tuples given in PostgreSQL's text form, as pgoutput
// sends them and as the Scanner returns them, exactly the way the SQL it
// builds (OrderBy, KeyPredicate) orders them, so that a change streamed from
// the WAL can be placed before or after a backfill cursor.
//
// A KeyOrder is immutable: it is safe for concurrent use.
type KeyOrder struct {
	table     TableRef
	cols      []keyColumn
	positions []int
	selects   []string // the quoted columns to select, those pgoutput sends
}

// NewKeyOrder builds the order of the table's rows by keyCols (usually
// t.PrimaryKey). A key column of a type whose order cannot be reproduced
// here is an error that names it and says how to skip the table's backfill.
//
// Text-like columns compare with COLLATE "C". Unless the column's own
// collation is C, that keeps the queries off the key's index: each chunk
// then reads and sorts the rest of the table. Scanner.KeyOrder leaves the
// clause out where the column's collation already is C.
func NewKeyOrder(t *Table, keyCols []string) (*KeyOrder, error) {
	return newKeyOrder(t, keyCols, nil)
}

// newKeyOrder is NewKeyOrder; byteOrdered names the columns whose own
// collation compares bytes, which need no COLLATE "C".
func newKeyOrder(t *Table, keyCols []string, byteOrdered map[string]bool) (*KeyOrder, error) {
	if len(keyCols) == 0 {
		return nil, fmt.Errorf("ordering table %s: no key columns (tables without a key are backfilled by ctid)", t.Ref())
	}
	o := &KeyOrder{table: t.Ref(), cols: make([]keyColumn, len(keyCols)), positions: make([]int, len(keyCols))}
	sent := make(map[string]int, len(t.Columns))
	for i := range t.Columns {
		c := &t.Columns[i]
		if c.Sent() {
			sent[c.Name] = len(o.selects)
			o.selects = append(o.selects, quoteIdent(c.Name))
		}
	}
	m := pgtype.NewMap()
	for i, name := range keyCols {
		col := t.column(name)
		if col == nil {
			return nil, fmt.Errorf("ordering table %s: key column %q does not exist", t.Ref(), name)
		}
		if col.Generated {
			return nil, fmt.Errorf("ordering table %s: key column %q is generated and pgoutput does not send it: list the table in source.advanced.skip_backfills", t.Ref(), name)
		}
		if col.Unpublished {
			return nil, fmt.Errorf("ordering table %s: key column %q is left out by the publication's column list and pgoutput does not send it: add it to the column list", t.Ref(), name)
		}
		kc, err := newKeyColumn(m, col)
		if err != nil {
			return nil, fmt.Errorf("ordering table %s: %w: list the table in source.advanced.skip_backfills to stream it without a backfill", t.Ref(), err)
		}
		if byteOrdered[name] {
			kc.collate = false
		}
		o.cols[i] = kc
		o.positions[i] = sent[name]
	}
	return o, nil
}

func (t *Table) column(name string) *Column {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

func newKeyColumn(m *pgtype.Map, col *Column) (keyColumn, error) {
	typ, _ := col.Resolved()
	kc := keyColumn{name: col.Name, typ: col.Type.Display}
	if kc.typ == "" {
		kc.typ = typ.Name
	}
	switch {
	case typ.Kind == KindEnum:
		kc.kind = keyEnum
		kc.labels = make(map[string]int, len(typ.Labels))
		for i, l := range typ.Labels {
			kc.labels[l] = i
		}
		return kc, nil
	case typ.Kind != KindBase || typ.Schema != "pg_catalog" && typ.Name != "citext":
		// Types of extensions and user-defined base types order as their
		// authors decided.
		return kc, unsupportedKey(col, typ)
	}
	switch typ.Name {
	case "int2", "int4", "int8", "oid":
		kc.kind = keyInt
	case "numeric":
		kc.kind = keyNumeric
		kc.plan = m.PlanScan(pgtype.NumericOID, pgtype.TextFormatCode, &pgtype.Numeric{})
	case "bpchar":
		kc.kind, kc.collate = keyBpchar, true
	case "uuid":
		kc.kind = keyUUID
	case "bool":
		kc.kind = keyBool
	case "date":
		kc.kind = keyDate
		kc.plan = m.PlanScan(pgtype.DateOID, pgtype.TextFormatCode, &pgtype.Date{})
	case "timestamp":
		kc.kind = keyTimestamp
		kc.plan = m.PlanScan(pgtype.TimestampOID, pgtype.TextFormatCode, &pgtype.Timestamp{})
	case "timestamptz":
		kc.kind = keyTimestamptz
		kc.plan = m.PlanScan(pgtype.TimestamptzOID, pgtype.TextFormatCode, &pgtype.Timestamptz{})
	case "citext":
		// citext compares lowercased values; under COLLATE "C" only ASCII
		// letters are lowered (str_tolower), then bytes compare.
		kc.kind, kc.collate = keyCIText, true
	default:
		if typ.Category != 'S' {
			return kc, unsupportedKey(col, typ)
		}
		// text, varchar, name and the other string types of pg_catalog.
		kc.kind, kc.collate = keyText, true
	}
	return kc, nil
}

func unsupportedKey(col *Column, typ *Type) error {
	return fmt.Errorf("key column %q has type %s (%s.%s), whose order the backfill cannot reproduce",
		col.Name, col.Type.Display, typ.Schema, typ.Name)
}

// Table is the table the order was built for.
func (o *KeyOrder) Table() TableRef { return o.table }

// Columns are the key columns, in key order.
func (o *KeyOrder) Columns() []string {
	names := make([]string, len(o.cols))
	for i, c := range o.cols {
		names[i] = c.name
	}
	return names
}

// Positions are the indexes of the key columns in the rows pgoutput sends
// and ScanChunk returns (the live, non-generated columns in attnum order).
func (o *KeyOrder) Positions() []int { return o.positions }

// Key appends the key values of a row (as pgoutput sends it or ScanChunk
// returns it) to dst. The values alias the row's.
func (o *KeyOrder) Key(dst [][]byte, row []Value) [][]byte {
	for _, p := range o.positions {
		dst = append(dst, row[p].Data)
	}
	return dst
}

// OrderBy is the ORDER BY list of the key: each column quoted, the
// collatable ones with COLLATE "C".
func (o *KeyOrder) OrderBy() string {
	return o.keyList()
}

// Collated reports whether a key column is compared with COLLATE "C"
// against its own collation, which an index on the key cannot serve.
func (o *KeyOrder) Collated() bool {
	for _, c := range o.cols {
		if c.collate {
			return true
		}
	}
	return false
}

// SelectKey is the select list of the key columns, in key order.
func (o *KeyOrder) SelectKey() string {
	names := make([]string, len(o.cols))
	for i, c := range o.cols {
		names[i] = quoteIdent(c.name)
	}
	return strings.Join(names, ", ")
}

func (o *KeyOrder) keyList() string {
	var b strings.Builder
	for i, c := range o.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.sql())
	}
	return b.String()
}

func (c *keyColumn) sql() string {
	if c.collate {
		return quoteIdent(c.name) + ` COLLATE "C"`
	}
	return quoteIdent(c.name)
}

// KeyPredicate is the condition "key op (parameters)", op one of <, <=, >,
// >=, =, with the parameters numbered from firstParam, one per key column
// in key order, to be sent as text with unknown type so that the server
// takes each column's: e.g. `("a" COLLATE "C", "b") > ($1 COLLATE "C", $2)`.
func (o *KeyOrder) KeyPredicate(op string, firstParam int) string {
	switch op {
	case "<", "<=", ">", ">=", "=":
	default:
		panic("pgsrc: KeyPredicate: bad operator " + op)
	}
	var params strings.Builder
	for i, c := range o.cols {
		if i > 0 {
			params.WriteString(", ")
		}
		fmt.Fprintf(&params, "$%d", firstParam+i)
		if c.collate {
			params.WriteString(` COLLATE "C"`)
		}
	}
	if len(o.cols) == 1 {
		return o.keyList() + " " + op + " " + params.String()
	}
	return "(" + o.keyList() + ") " + op + " (" + params.String() + ")"
}

// Check reports whether every value of key can be compared: the right
// number of values, each one a valid text form of its column's type. Keys
// from the WAL must pass Check before they are given to Compare. An enum
// label unknown to the order is ErrStaleKeyOrder.
func (o *KeyOrder) Check(key [][]byte) error {
	if len(key) != len(o.cols) {
		return fmt.Errorf("key of table %s has %d values, want %d", o.table, len(key), len(o.cols))
	}
	for i := range o.cols {
		c := &o.cols[i]
		if _, err := c.compare(key[i], key[i]); err != nil {
			return fmt.Errorf("key column %q of table %s: %w", c.name, o.table, err)
		}
	}
	return nil
}

// Compare compares two keys in the order of OrderBy: -1 if a sorts before
// b, 0 if they are equal, +1 if after. Both keys must have passed Check
// (keys the Scanner returns always have): Compare panics on a value its
// column's type cannot parse.
func (o *KeyOrder) Compare(a, b [][]byte) int {
	c, err := o.CompareChecked(a, b)
	if err != nil {
		panic(fmt.Sprintf("pgsrc: KeyOrder.Compare on a key that does not pass Check: %v", err))
	}
	return c
}

// CompareChecked is Compare for keys that have not passed Check (keys
// from the WAL): a value its column's type cannot parse is an error, not
// a panic. It parses each value once, where Check then Compare parse twice.
func (o *KeyOrder) CompareChecked(a, b [][]byte) (int, error) {
	if len(a) != len(o.cols) || len(b) != len(o.cols) {
		return 0, fmt.Errorf("keys of %d and %d values for the key of %s, of %d columns", len(a), len(b), o.table, len(o.cols))
	}
	for i := range o.cols {
		c, err := o.cols[i].compare(a[i], b[i])
		if err != nil {
			return 0, fmt.Errorf("key column %q of table %s: %w", o.cols[i].name, o.table, err)
		}
		if c != 0 {
			return c, nil
		}
	}
	return 0, nil
}

// compare compares two text values of the column.
func (c *keyColumn) compare(a, b []byte) (int, error) {
	switch c.kind {
	case keyInt:
		x, ok := parseInt(a)
		y, ok2 := parseInt(b)
		if !ok || !ok2 {
			return 0, c.badValue(a, b, ok)
		}
		return cmpInt(x, y), nil
	case keyText:
		return bytes.Compare(a, b), nil
	case keyBpchar:
		return bytes.Compare(bytes.TrimRight(a, " "), bytes.TrimRight(b, " ")), nil
	case keyUUID, keyCIText:
		return compareFold(a, b), nil
	case keyBool:
		x, ok := parseBool(a)
		y, ok2 := parseBool(b)
		if !ok || !ok2 {
			return 0, c.badValue(a, b, ok)
		}
		return cmpInt(x, y), nil
	case keyEnum:
		x, ok := c.labels[string(a)]
		y, ok2 := c.labels[string(b)]
		if !ok || !ok2 {
			v := b
			if !ok {
				v = a
			}
			return 0, fmt.Errorf("enum label %q unknown to the %s type as described: %w", v, c.typ, ErrStaleKeyOrder)
		}
		return cmpInt(x, y), nil
	case keyNumeric:
		var x, y pgtype.Numeric
		if err := c.plan.Scan(a, &x); err != nil {
			return 0, fmt.Errorf("%s value %q: %w", c.typ, a, err)
		}
		if err := c.plan.Scan(b, &y); err != nil {
			return 0, fmt.Errorf("%s value %q: %w", c.typ, b, err)
		}
		return compareNumeric(&x, &y), nil
	case keyDate:
		var x, y pgtype.Date
		if err := c.plan.Scan(a, &x); err != nil {
			return 0, fmt.Errorf("%s value %q: %w", c.typ, a, err)
		}
		if err := c.plan.Scan(b, &y); err != nil {
			return 0, fmt.Errorf("%s value %q: %w", c.typ, b, err)
		}
		return compareInstant(x.InfinityModifier, x.Time, y.InfinityModifier, y.Time), nil
	case keyTimestamp, keyTimestamptz:
		xi, x, err := c.scanTime(a)
		if err != nil {
			return 0, err
		}
		yi, y, err := c.scanTime(b)
		if err != nil {
			return 0, err
		}
		return compareInstant(xi, x, yi, y), nil
	}
	panic("pgsrc: keyColumn.compare: unknown kind")
}

func (c *keyColumn) scanTime(v []byte) (pgtype.InfinityModifier, time.Time, error) {
	var err error
	if c.kind == keyTimestamptz {
		var t pgtype.Timestamptz
		if err = c.plan.Scan(v, &t); err == nil {
			return t.InfinityModifier, t.Time, nil
		}
	} else {
		var t pgtype.Timestamp
		if err = c.plan.Scan(v, &t); err == nil {
			return t.InfinityModifier, t.Time, nil
		}
	}
	return 0, time.Time{}, fmt.Errorf("%s value %q: %w", c.typ, v, err)
}

func (c *keyColumn) badValue(a, b []byte, aOK bool) error {
	v := b
	if !aOK {
		v = a
	}
	return fmt.Errorf("%s value %q is not valid", c.typ, v)
}

func cmpInt[T int | int64](x, y T) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// parseInt parses a decimal int64 as int2out, int4out, int8out and oidout
// print it, without allocating.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0') // 19 digits fit in a uint64
	}
	switch {
	case !neg && u > 1<<63-1:
		return 0, false
	case neg && u > 1<<63:
		return 0, false
	case neg:
		return -int64(u-1) - 1, true
	}
	return int64(u), true
}

func parseBool(b []byte) (int, bool) {
	if len(b) == 1 {
		switch b[0] {
		case 'f':
			return 0, true
		case 't':
			return 1, true
		}
	}
	return 0, false
}

// compareFold compares byte strings with ASCII letters lowercased.
func compareFold(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := lower(a[i]), lower(b[i])
		if x != y {
			return cmpInt(int(x), int(y))
		}
	}
	return cmpInt(len(a), len(b))
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// compareNumeric orders numerics as PostgreSQL does: -Infinity, the
// numbers, Infinity, then NaN (equal to itself).
func compareNumeric(x, y *pgtype.Numeric) int {
	rank := func(n *pgtype.Numeric) int {
		switch {
		case n.NaN:
			return 2
		case n.InfinityModifier == pgtype.Infinity:
			return 1
		case n.InfinityModifier == pgtype.NegativeInfinity:
			return -1
		}
		return 0
	}
	if rx, ry := rank(x), rank(y); rx != 0 || ry != 0 {
		return cmpInt(rx, ry)
	}
	// x.Int * 10^x.Exp against y.Int * 10^y.Exp: scale the one with the
	// larger exponent down to the other's.
	xi, yi := x.Int, y.Int
	if xi.Sign() != yi.Sign() || xi.Sign() == 0 {
		return cmpInt(xi.Sign(), yi.Sign())
	}
	switch {
	case x.Exp > y.Exp:
		xi = new(big.Int).Mul(xi, pow10(x.Exp-y.Exp))
	case y.Exp > x.Exp:
		yi = new(big.Int).Mul(yi, pow10(y.Exp-x.Exp))
	}
	return xi.Cmp(yi)
}

func pow10(n int32) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// compareInstant orders date and time values with their infinities.
func compareInstant(xi pgtype.InfinityModifier, x time.Time, yi pgtype.InfinityModifier, y time.Time) int {
	if xi != pgtype.Finite || yi != pgtype.Finite {
		return cmpInt(int(xi), int(yi))
	}
	return x.Compare(y)
}
