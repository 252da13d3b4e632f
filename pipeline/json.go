package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// format.encoding json: table records are rewritten by their schema.Codec;
// transaction metadata and logical decoding messages, built by codecs of
// their own, are rewritten here, after they are appended to the batch's
// slab. Nothing is registered.

// rewriteJSON replaces the Avro record in slab[off:] by its JSON form j; a
// nil j (Avro) leaves it. The Avro was just written by our own codec, so a
// failure is a defect.
func rewriteJSON(j *schema.JSONForm, slab []byte, off int) []byte {
	if j == nil {
		return slab
	}
	out, err := j.Rewrite(slab, off)
	if err != nil {
		panic(fmt.Sprintf("pgkafka: rewriting our own Avro as JSON: %v", err))
	}
	return out
}

// What JSON does not offer yet: verify and the demo's tail decode Avro
// through the registry.
var (
	errJSONVerify = errors.New("format.encoding: json: verify reads the topics' Avro through the schema registry and cannot read JSON records; run it on a capture with format.encoding avro")
	errJSONTail   = errors.New("format.encoding: json: the record tail decodes Avro through the schema registry and cannot read JSON records")
)

// droppedShape is what the registered schemas say of a dropped table (see
// droppedInfo): its key's fields and whether each field is nullable. Under
// JSON nothing is registered: the key is the binding's key, else the
// replica identity's columns pgoutput flags, the key the table's records
// had; nullable is nil (each column as a new one).
func (c *codecs) droppedShape(ctx context.Context, ref pgsrc.TableRef, rel *pgsrc.Relation) (key []string, nullable map[string]bool, err error) {
	if !c.cfg.Format.JSON() {
		keySubject, valueSubject := c.cfg.subjects(ref)
		return c.registry.Registered(ctx, keySubject, valueSubject)
	}
	t := &pgsrc.Table{Schema: ref.Schema, Name: ref.Name}
	for _, i := range rel.KeyColumns() {
		t.KeyColumns = append(t.KeyColumns, rel.Columns[i].Name)
	}
	for _, k := range c.cfg.messageKey(t) {
		key = append(key, schema.SanitizeName(k))
	}
	return key, nil, nil
}
