package schema

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"
)

// Schema evolution: a table's new shape (a Relation message after ALTER
// TABLE) gives new schemas, which must stay BACKWARD compatible with their
// subject's latest version (a consumer holding the new schema reads the
// records written with the old), or follow OnIncompatible.

// OnIncompatible is what pgkafka does with a new schema that cannot read the
// data of its subject's latest version (schemaRegistry.onIncompatible).
type OnIncompatible uint8

const (
	// IncompatibleStop stops the capture with an IncompatibleError.
	IncompatibleStop OnIncompatible = iota
	// IncompatibleRegister sets the subject's compatibility to NONE and
	// registers the schema, reporting what it forced.
	IncompatibleRegister
)

// String returns the configuration spelling.
func (o OnIncompatible) String() string {
	switch o {
	case IncompatibleStop:
		return "stop"
	case IncompatibleRegister:
		return "register"
	}
	return fmt.Sprintf("OnIncompatible(%d)", uint8(o))
}

// ParseOnIncompatible parses "stop" or "register"; "" is stop.
func ParseOnIncompatible(s string) (OnIncompatible, error) {
	switch s {
	case "", "stop":
		return IncompatibleStop, nil
	case "register":
		return IncompatibleRegister, nil
	}
	return 0, fmt.Errorf("unknown policy %q: want stop or register", s)
}

// Incompatibility is a new schema of a subject that cannot read the data of
// the subject's latest version.
type Incompatibility struct {
	Subject string
	// Version is the subject's latest version, the one checked against.
	Version int
	// Problems name each field at fault and why.
	Problems []string
}

func (in Incompatibility) String() string {
	return fmt.Sprintf("subject %s (against version %d): %s", in.Subject, in.Version, strings.Join(in.Problems, "; "))
}

// IncompatibleError reports new schemas of a table that are not BACKWARD
// compatible with their subjects' latest versions, under the policy stop.
type IncompatibleError struct {
	Table    string // <schema>.<table>
	Subjects []Incompatibility
}

func (e *IncompatibleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the new schema of %s is not BACKWARD compatible (a consumer with it could not read the records already written): ", e.Table)
	for i, in := range e.Subjects {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(in.String())
	}
	b.WriteString("; to go on, set schemaRegistry.onIncompatible: register and restart (the subject's compatibility becomes NONE: " +
		"consumers must be ready for records of both schemas), or give the binding a new target topic (new subjects) and restart")
	return b.String()
}

// Fields returns the problems of every subject, for logs.
func (e *IncompatibleError) Fields() []string {
	var out []string
	for _, in := range e.Subjects {
		out = append(out, in.Problems...)
	}
	return out
}

// incompatibilities returns why newer cannot read data written with older:
// hamba/avro's schema resolution (Compatible), made precise per field, plus
// what Avro resolution lets through but changes values: a logical type that
// changes (text to uuid, timestamp to timestamptz), a decimal whose scale
// changes or precision shrinks. For a key schema, any change of its fields'
// names or order is a problem too: the same row would get another Kafka key
// (another partition; compaction would keep both).
func incompatibilities(newer, older avro.Schema, key bool) []string {
	w := &walker{compat: avro.NewSchemaCompatibility()}
	if key {
		rn, ro := asRecord(newer), asRecord(older)
		if rn != nil && ro != nil && !slices.Equal(fieldNames(rn), fieldNames(ro)) {
			w.add(fmt.Sprintf("key fields (%s) were (%s): a row's Kafka key changes", strings.Join(fieldNames(rn), ", "), strings.Join(fieldNames(ro), ", ")))
		}
	}
	w.walk("", newer, older)
	if len(w.out) == 0 {
		if err := w.compat.Compatible(newer, older); err != nil {
			w.add(err.Error())
		}
	}
	return w.out
}

type walker struct {
	compat *avro.SchemaCompatibility
	out    []string
}

func (w *walker) add(p string) {
	if !slices.Contains(w.out, p) {
		w.out = append(w.out, p)
	}
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func asRecord(s avro.Schema) *avro.RecordSchema {
	r, _ := deref(s).(*avro.RecordSchema)
	return r
}

func fieldNames(r *avro.RecordSchema) []string {
	names := make([]string, len(r.Fields()))
	for i, f := range r.Fields() {
		names[i] = f.Name()
	}
	return names
}

// walk compares reader r with writer o at path (the field, "" at the top).
func (w *walker) walk(path string, r, o avro.Schema) {
	r, o = deref(r), deref(o)
	if ru, ok := o.(*avro.UnionSchema); ok {
		// Each branch the writer may have written must be readable.
		for _, ob := range ru.Types() {
			w.walk(path, r, ob)
		}
		return
	}
	if u, ok := r.(*avro.UnionSchema); ok {
		// The reader branch that matches the writer's type, else any that
		// resolves it.
		for _, rb := range u.Types() {
			if sameKind(deref(rb), o) {
				w.walk(path, rb, o)
				return
			}
		}
		for _, rb := range u.Types() {
			if w.compat.Compatible(rb, o) == nil {
				return
			}
		}
		w.add(fmt.Sprintf("%s: written as %s, which the new type %s cannot read", pathName(path), typeName(o), typeName(r)))
		return
	}
	switch {
	case r.Type() == avro.Record && o.Type() == avro.Record:
		rr, or := r.(*avro.RecordSchema), o.(*avro.RecordSchema)
		for _, f := range rr.Fields() {
			of := findField(or, f)
			fp := rr.Name() + "." + f.Name()
			if of == nil {
				if !f.HasDefault() {
					w.add(fmt.Sprintf("field %s is new and has no default (a NOT NULL column added without a default PostgreSQL could give older rows)", fp))
				}
				continue
			}
			w.walk(fp, f.Type(), of.Type())
		}
		return
	case r.Type() == avro.Array && o.Type() == avro.Array:
		w.walk(path+"[]", r.(*avro.ArraySchema).Items(), o.(*avro.ArraySchema).Items())
		return
	case r.Type() == avro.Map && o.Type() == avro.Map:
		w.walk(path+"{}", r.(*avro.MapSchema).Values(), o.(*avro.MapSchema).Values())
		return
	}
	if err := w.compat.Compatible(r, o); err != nil {
		w.add(fmt.Sprintf("%s: written as %s, which the new type %s cannot read", pathName(path), typeName(o), typeName(r)))
		return
	}
	if p := logicalChange(r, o); p != "" {
		w.add(fmt.Sprintf("%s: %s", pathName(path), p))
	}
}

func pathName(path string) string {
	if path == "" {
		return "the record"
	}
	return "field " + path
}

// findField is the writer's field that reader field f reads: same name, or
// one of f's aliases.
func findField(o *avro.RecordSchema, f *avro.Field) *avro.Field {
	for _, of := range o.Fields() {
		if of.Name() == f.Name() {
			return of
		}
	}
	for _, of := range o.Fields() {
		if slices.Contains(f.Aliases(), of.Name()) {
			return of
		}
	}
	return nil
}

// sameKind reports whether two schemas are of one type (and, named, of one
// name): the union branch a value of o lands in.
func sameKind(r, o avro.Schema) bool {
	if r.Type() != o.Type() {
		return false
	}
	rn, ok1 := r.(avro.NamedSchema)
	on, ok2 := o.(avro.NamedSchema)
	return !ok1 || !ok2 || rn.FullName() == on.FullName()
}

func typeName(s avro.Schema) string {
	s = deref(s)
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	if p, ok := s.(*avro.PrimitiveSchema); ok && p.Logical() != nil {
		return fmt.Sprintf("%s (%s)", p.Type(), logicalName(p.Logical()))
	}
	return string(s.Type())
}

func logicalName(l avro.LogicalSchema) string {
	if d, ok := l.(*avro.DecimalLogicalSchema); ok {
		return fmt.Sprintf("decimal(%d,%d)", d.Precision(), d.Scale())
	}
	return string(l.Type())
}

// logicalChange describes a change of logical type between two primitives
// that Avro resolution accepts but that changes what the bytes mean; "" if
// none.
func logicalChange(r, o avro.Schema) string {
	rp, ok1 := r.(*avro.PrimitiveSchema)
	op, ok2 := o.(*avro.PrimitiveSchema)
	if !ok1 || !ok2 {
		return ""
	}
	rl, ol := rp.Logical(), op.Logical()
	switch {
	case rl == nil && ol == nil:
		return ""
	case rl == nil || ol == nil || rl.Type() != ol.Type():
		return fmt.Sprintf("written as %s, which reads differently as %s", typeName(o), typeName(r))
	}
	rd, ok1 := rl.(*avro.DecimalLogicalSchema)
	od, ok2 := ol.(*avro.DecimalLogicalSchema)
	if ok1 && ok2 && (rd.Scale() != od.Scale() || rd.Precision() < od.Precision()) {
		return fmt.Sprintf("written as %s, which does not fit or reads differently as %s", typeName(o), typeName(r))
	}
	return ""
}

// maxExactJSON is the largest integer a JSON number keeps exactly in the
// float64 that schema parsers read it into.
const maxExactJSON = 1 << 53

// defaultJSON returns the Avro default (JSON) of a non-null value of m in
// PostgreSQL text form, or false when m's Avro type cannot hold it as a
// default (records, arrays, maps, non-finite floats, integers beyond 2^53)
// or the text does not convert.
func defaultJSON(m *mapping, text string) (string, bool) {
	if m.named != "" {
		return "", false
	}
	bin, err := m.conv(nil, []byte(text))
	if err != nil {
		return "", false
	}
	s, err := avro.ParseWithCache(m.avro, "", &avro.SchemaCache{})
	if err != nil {
		return "", false
	}
	prim := func(t avro.Type, v any) bool {
		return avro.Unmarshal(avro.NewPrimitiveSchema(t, nil), bin, v) == nil
	}
	switch t := s.Type(); t {
	case avro.Boolean:
		var v bool
		if prim(t, &v) {
			return strconv.FormatBool(v), true
		}
	case avro.Int, avro.Long:
		var v int64
		if prim(avro.Long, &v) && v <= maxExactJSON && v >= -maxExactJSON {
			return strconv.FormatInt(v, 10), true
		}
	case avro.Float:
		var v float32
		if prim(t, &v) && !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
			return strconv.FormatFloat(float64(v), 'g', -1, 32), true
		}
	case avro.Double:
		var v float64
		if prim(t, &v) && !math.IsNaN(v) && !math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'g', -1, 64), true
		}
	case avro.String:
		var v string
		if prim(t, &v) {
			return jsonText(v), true
		}
	case avro.Bytes:
		// Avro writes a bytes default as a string of code points 0-255.
		var v []byte
		if prim(t, &v) {
			r := make([]rune, len(v))
			for i, c := range v {
				r[i] = rune(c)
			}
			return jsonText(string(r)), true
		}
	}
	return "", false
}

func jsonText(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// Inherit carries into t what the latest version of its value subject
// promised readers, so a new shape does not break it needlessly: a column
// nullable there stays nullable (ALTER COLUMN SET NOT NULL, or a catalog
// read at start that finds the column NOT NULL since, would otherwise make
// the records with nulls unreadable), a field keeps its aliases (former
// names), and a non-nullable column without a default takes its Fallback
// (the column's constant default) as its default when it is new to the
// subject, or when its field had a default there: a rewrite of the table
// drops the missing value, not what older records need. A subject without
// versions leaves t as is.
//
// env is the records' envelope, which names the value record (and so its
// subject under the record strategies).
func (r *Registry) Inherit(ctx context.Context, t *Table, env Envelope) error {
	_, subject := t.Subjects.Subjects(t.Topic, t.Namespace, env)
	old, _, err := r.Latest(ctx, subject)
	if err != nil || old == nil {
		return err
	}
	rec := valueRecord(old)
	if rec == nil {
		return nil
	}
	for i := range t.Columns {
		c := &t.Columns[i]
		name := SanitizeName(c.Name)
		var f *avro.Field
		for _, of := range rec.Fields() {
			if of.Name() == name {
				f = of
				break
			}
		}
		if (f == nil || f.HasDefault()) && !c.Nullable && !c.HasDefault && c.HasFallback {
			c.Default, c.HasDefault = c.Fallback, true
		}
		if f == nil {
			continue
		}
		if u, ok := deref(f.Type()).(*avro.UnionSchema); ok && u.Nullable() {
			c.Nullable = true
		}
		for _, a := range f.Aliases() {
			if !slices.Contains(c.Aliases, a) {
				c.Aliases = append(c.Aliases, a)
			}
		}
	}
	return nil
}

// Registered describes the latest versions of a table's subjects, for a
// table the catalog no longer describes (dropped: the stream still
// carries its last changes): the Avro field names of its key, in key
// order (none: null keys, or nothing registered), and the value fields
// that are nullable. Encoding by them keeps the key bytes (and so the
// partition and the compaction key) and the value schema the topic has.
func (r *Registry) Registered(ctx context.Context, keySubject, valueSubject string) (key []string, nullable map[string]bool, err error) {
	ks, _, err := r.Latest(ctx, keySubject)
	if err != nil {
		return nil, nil, err
	}
	if rec := asRecord(ks); rec != nil {
		for _, f := range rec.Fields() {
			key = append(key, f.Name())
		}
	}
	vs, _, err := r.Latest(ctx, valueSubject)
	if err != nil {
		return nil, nil, err
	}
	nullable = map[string]bool{}
	if rec := valueRecord(vs); rec != nil {
		for _, f := range rec.Fields() {
			u, ok := deref(f.Type()).(*avro.UnionSchema)
			nullable[f.Name()] = ok && u.Nullable()
		}
	}
	return key, nullable, nil
}

// valueRecord finds the <ns>.Value record of a value schema: the top record
// (flat envelope) or the record of Debezium's before field.
func valueRecord(s avro.Schema) *avro.RecordSchema {
	rec := asRecord(s)
	if rec == nil || rec.Name() == "Value" {
		return rec
	}
	for _, f := range rec.Fields() {
		if f.Name() != "before" {
			continue
		}
		if u, ok := deref(f.Type()).(*avro.UnionSchema); ok {
			for _, b := range u.Types() {
				if r := asRecord(b); r != nil {
					return r
				}
			}
		}
	}
	return nil
}
