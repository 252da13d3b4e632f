package schema

import (
	"encoding/json"
	"strings"
)

// Avro schema JSON, written by hand so field order and the Debezium/Connect
// properties are exactly as documented.

// SourceFullName is the Avro full name of Debezium's PostgreSQL source block.
const SourceFullName = "io.debezium.connector.postgresql.Source"

// sourceSchema is io.debezium.connector.postgresql.Source with the fields of
// Debezium's PostgreSQL connector, in its order.
const sourceSchema = `{"type":"record","name":"Source","namespace":"io.debezium.connector.postgresql","fields":[` +
	`{"name":"version","type":"string"},` +
	`{"name":"connector","type":"string"},` +
	`{"name":"name","type":"string"},` +
	`{"name":"ts_ms","type":"long"},` +
	`{"name":"snapshot","type":[{"type":"string","connect.version":1,"connect.parameters":{"allowed":"true,last,false,incremental"},"connect.default":"false","connect.name":"io.debezium.data.Enum"},"null"],"default":"false"},` +
	`{"name":"db","type":"string"},` +
	`{"name":"sequence","type":["null","string"],"default":null},` +
	`{"name":"schema","type":"string"},` +
	`{"name":"table","type":"string"},` +
	`{"name":"txId","type":["null","long"],"default":null},` +
	`{"name":"lsn","type":["null","long"],"default":null},` +
	`{"name":"xmin","type":["null","long"],"default":null}` +
	`],"connect.name":"io.debezium.connector.postgresql.Source"}`

const transactionSchema = `["null",{"type":"record","name":"block","namespace":"event","fields":[` +
	`{"name":"id","type":"string"},` +
	`{"name":"total_order","type":"long"},` +
	`{"name":"data_collection_order","type":"long"}` +
	`]}],"default":null`

func jsonString(b *strings.Builder, s string) {
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}

// writeField writes one column's field; nullable columns are ["null", T]
// with default null.
// Named types (io.pgkafka.Interval) are defined at their first use in the
// schema and referred to by name after, as Avro requires; defined holds the
// names defined so far.
//
// A non-nullable field with a default (an added column, see Column.Default)
// writes it; key fields (forced non-null) take no default and no aliases.
func writeField(b *strings.Builder, c *colCodec, nullable, key bool, defined map[string]bool) {
	b.WriteString(`{"name":`)
	jsonString(b, c.field)
	if len(c.aliases) > 0 && !key {
		b.WriteString(`,"aliases":[`)
		for i, a := range c.aliases {
			if i > 0 {
				b.WriteByte(',')
			}
			jsonString(b, a)
		}
		b.WriteByte(']')
	}
	b.WriteString(`,"type":`)
	if nullable {
		b.WriteString(`["null",`)
		b.WriteString(c.schemaJSON(defined))
		b.WriteString(`],"default":null}`)
		return
	}
	b.WriteString(c.schemaJSON(defined))
	if c.def != "" && !key {
		b.WriteString(`,"default":`)
		b.WriteString(c.def)
	}
	b.WriteByte('}')
}

// recordSchema writes record <ns>.<name> with the given columns and extra
// fields (already JSON).
func recordSchema(b *strings.Builder, ns, name string, cols []colCodec, forceNonNull bool, extra ...string) {
	b.WriteString(`{"type":"record","name":`)
	jsonString(b, name)
	b.WriteString(`,"namespace":`)
	jsonString(b, ns)
	b.WriteString(`,"fields":[`)
	n := 0
	defined := map[string]bool{}
	for i := range cols {
		if cols[i].excluded {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		writeField(b, &cols[i], cols[i].nullable && !forceNonNull, forceNonNull, defined)
		n++
	}
	for _, f := range extra {
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f)
		n++
	}
	b.WriteString(`],"connect.name":`)
	jsonString(b, ns+"."+name)
	b.WriteByte('}')
}

func keySchema(ns string, keyCols []colCodec, extra ...string) string {
	var b strings.Builder
	recordSchema(&b, ns, "Key", keyCols, true, extra...)
	return b.String()
}

// Field names the flat envelope adds to the row's columns.
const (
	flatOp      = "__op"
	flatLSN     = "__lsn"
	flatDeleted = "__deleted"
)

func flatValueSchema(ns string, cols []colCodec) string {
	var b strings.Builder
	recordSchema(&b, ns, "Value", cols, false,
		`{"name":"__op","type":"string"}`,
		`{"name":"__lsn","type":["null","long"],"default":null}`,
		`{"name":"__deleted","type":"string"}`,
	)
	return b.String()
}

func debeziumValueSchema(ns string, cols []colCodec) string {
	var b strings.Builder
	b.WriteString(`{"type":"record","name":"Envelope","namespace":`)
	jsonString(&b, ns)
	b.WriteString(`,"fields":[{"name":"before","type":["null",`)
	recordSchema(&b, ns, "Value", cols, false)
	b.WriteString(`],"default":null},{"name":"after","type":["null",`)
	jsonString(&b, ns+".Value")
	b.WriteString(`],"default":null},{"name":"source","type":`)
	b.WriteString(sourceSchema)
	b.WriteString(`},{"name":"op","type":"string"},{"name":"ts_ms","type":["null","long"],"default":null},{"name":"transaction","type":`)
	b.WriteString(transactionSchema)
	b.WriteString(`}],"connect.name":`)
	jsonString(&b, ns+".Envelope")
	b.WriteByte('}')
	return b.String()
}
