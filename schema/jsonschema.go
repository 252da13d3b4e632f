package schema

import (
	"sort"
	"strconv"

	"github.com/hamba/avro/v2"
)

// connectSchema writes the Kafka Connect schema (JsonConverter's
// schemas.enable form) of Avro schema s: records are structs named by their
// full name, ["null", T] is T with "optional": true, and logical types take
// the names Debezium's PostgreSQL connector gives them:
//
//	date                    int32 io.debezium.time.Date
//	time-micros             int64 io.debezium.time.MicroTime
//	local-timestamp-micros  int64 io.debezium.time.MicroTimestamp
//	timestamp-micros        int64 io.debezium.time.MicroTimestamp (UTC)
//	decimal(p,s)            bytes org.apache.kafka.connect.data.Decimal,
//	                        parameters scale and connect.decimal.precision
//	uuid                    string io.debezium.data.Uuid
//
// A connect.name property (io.debezium.data.Json, io.debezium.data.Enum)
// names the type, with its connect.version and connect.parameters. field is
// the struct field's name, "" outside a struct.
func connectSchema(s avro.Schema, optional bool, field string) []byte {
	if u, ok := s.(*avro.UnionSchema); ok {
		var inner avro.Schema
		for _, t := range u.Types() {
			if t.Type() == avro.Null {
				optional = true
			} else if inner == nil {
				inner = t
			}
		}
		if inner == nil {
			inner = u.Types()[0]
		}
		s = inner
	}
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	b := []byte(`{"type":`)
	var name, version string
	var params [][2]string
	switch t := s.(type) {
	case *avro.RecordSchema:
		b = append(b, `"struct","fields":[`...)
		for i, f := range t.Fields() {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, connectSchema(f.Type(), false, f.Name())...)
		}
		b = append(b, ']')
		name = t.FullName()
	case *avro.ArraySchema:
		b = append(b, `"array","items":`...)
		b = append(b, connectSchema(t.Items(), false, "")...)
	case *avro.MapSchema:
		b = append(b, `"map","keys":{"type":"string","optional":false},"values":`...)
		b = append(b, connectSchema(t.Values(), false, "")...)
	case *avro.PrimitiveSchema:
		typ := map[avro.Type]string{avro.Boolean: "boolean", avro.Int: "int32", avro.Long: "int64",
			avro.Float: "float", avro.Double: "float64", avro.String: "string", avro.Bytes: "bytes"}[t.Type()]
		b = strconv.AppendQuote(b, typ)
		if l := t.Logical(); l != nil {
			version = "1"
			switch l.Type() {
			case avro.Date:
				name = "io.debezium.time.Date"
			case avro.TimeMicros:
				name = "io.debezium.time.MicroTime"
			case avro.LocalTimestampMicros, avro.TimestampMicros:
				name = "io.debezium.time.MicroTimestamp"
			case avro.UUID:
				name = "io.debezium.data.Uuid"
			case avro.Decimal:
				d := l.(*avro.DecimalLogicalSchema)
				name = "org.apache.kafka.connect.data.Decimal"
				params = [][2]string{{"scale", strconv.Itoa(d.Scale())}, {"connect.decimal.precision", strconv.Itoa(d.Precision())}}
			default:
				version = ""
			}
		}
	default:
		b = append(b, `"string"`...)
	}
	if ps, ok := s.(avro.PropertySchema); ok {
		if n, ok := ps.Prop("connect.name").(string); ok {
			name = n
		}
		if v, ok := ps.Prop("connect.version").(float64); ok {
			version = strconv.Itoa(int(v))
		}
		if m, ok := ps.Prop("connect.parameters").(map[string]any); ok {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if v, ok := m[k].(string); ok {
					params = append(params, [2]string{k, v})
				}
			}
		}
	}
	b = append(b, `,"optional":`...)
	b = strconv.AppendBool(b, optional)
	if name != "" {
		b = append(b, `,"name":`...)
		b = appendJSONString(b, []byte(name))
	}
	if version != "" {
		b = append(b, `,"version":`...)
		b = append(b, version...)
	}
	if len(params) > 0 {
		b = append(b, `,"parameters":{`...)
		for i, p := range params {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, []byte(p[0]))
			b = append(b, ':')
			b = appendJSONString(b, []byte(p[1]))
		}
		b = append(b, '}')
	}
	if field != "" {
		b = append(b, `,"field":`...)
		b = appendJSONString(b, []byte(field))
	}
	return append(b, '}')
}
