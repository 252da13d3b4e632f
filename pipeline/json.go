package pipeline

import (
	"errors"
	"fmt"

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
