package schema

import (
	"fmt"

	"github.com/hamba/avro/v2"
)

// Logical decoding messages (pg_logical_emit_message) are written in the
// form of Debezium's PostgreSQL connector, so its consumers read them
// unchanged: key io.debezium.connector.postgresql.MessageKey {prefix},
// value io.debezium.connector.postgresql.MessageValue {op "m", ts_ms,
// source, transaction, message {prefix, content}}. The schemas are the Avro
// that Confluent's converter derives from Debezium's Connect schemas
// (optional fields: ["null", T] with default null).

// Full names of the message records.
const (
	MessageKeyFullName   = "io.debezium.connector.postgresql.MessageKey"
	MessageValueFullName = "io.debezium.connector.postgresql.MessageValue"
	MessageFullName      = "io.debezium.connector.postgresql.Message"
)

// OpMessage is the op of a message record. Table codecs refuse it.
const OpMessage Op = 'm'

const messageKeySchema = `{"type":"record","name":"MessageKey","namespace":"io.debezium.connector.postgresql","fields":[` +
	`{"name":"prefix","type":["null","string"],"default":null}` +
	`],"connect.version":1,"connect.name":"io.debezium.connector.postgresql.MessageKey"}`

const messageValueSchema = `{"type":"record","name":"MessageValue","namespace":"io.debezium.connector.postgresql","fields":[` +
	`{"name":"op","type":"string"},` +
	`{"name":"ts_ms","type":["null","long"],"default":null},` +
	`{"name":"source","type":` + sourceSchema + `},` +
	`{"name":"transaction","type":` + transactionSchema + `},` +
	`{"name":"message","type":{"type":"record","name":"Message","namespace":"io.debezium.connector.postgresql","fields":[` +
	`{"name":"prefix","type":["null","string"],"default":null},` +
	`{"name":"content","type":["null","bytes"],"default":null}` +
	`],"connect.version":1,"connect.name":"io.debezium.connector.postgresql.Message"}}` +
	`],"connect.version":1,"connect.name":"io.debezium.connector.postgresql.MessageValue"}`

// MessageEvent is one logical decoding message.
type MessageEvent struct {
	// Prefix and Content are read during the Append call only.
	Prefix, Content []byte
	TsMs            int64 // source.ts_ms: the commit time, or when read for a non-transactional message
	TxID            int64 // source.txId, <0 = null (a non-transactional message)
	LSN             int64 // source.lsn, <0 = null
	NowMs           int64 // ts_ms (processing time)
}

// MessageCodec encodes logical decoding messages to Confluent-framed Avro,
// by hand like Codec. After SetIDs it is read-only: its Append methods may
// run concurrently.
type MessageCodec struct {
	topic              string
	keyAvro, valueAvro avro.Schema
	keyHdr, valueHdr   [5]byte
	srcHead            []byte // version, connector, name
	srcDB              []byte // db, sequence (null), schema "", table ""
}

// NewMessageCodec returns the codec of the message topic. src is the
// source block's constant part, as for tables.
func NewMessageCodec(topic string, src Source) (*MessageCodec, error) {
	if topic == "" {
		return nil, fmt.Errorf("message schema: no topic")
	}
	c := &MessageCodec{topic: topic}
	cache := &avro.SchemaCache{}
	var err error
	if c.keyAvro, err = avro.ParseWithCache(messageKeySchema, "", cache); err != nil {
		return nil, fmt.Errorf("message key schema invalid: %w", err)
	}
	if c.valueAvro, err = avro.ParseWithCache(messageValueSchema, "", cache); err != nil {
		return nil, fmt.Errorf("message value schema invalid: %w", err)
	}
	c.srcHead = appendString(c.srcHead, src.Version)
	c.srcHead = appendString(c.srcHead, src.Connector)
	c.srcHead = appendString(c.srcHead, src.Name)
	c.srcDB = appendString(c.srcDB, src.DB)
	c.srcDB = append(c.srcDB, branch0)  // sequence: null
	c.srcDB = appendString(c.srcDB, "") // schema: a message has none, as in Debezium
	c.srcDB = appendString(c.srcDB, "") // table
	c.SetIDs(0, 0)
	return c, nil
}

// Topic returns the message topic.
func (c *MessageCodec) Topic() string { return c.topic }

// KeySubject returns the key's registry subject, <topic>-key.
func (c *MessageCodec) KeySubject() string { return c.topic + "-key" }

// ValueSubject returns the value's registry subject, <topic>-value.
func (c *MessageCodec) ValueSubject() string { return c.topic + "-value" }

// KeySchema returns the key schema JSON.
func (c *MessageCodec) KeySchema() string { return messageKeySchema }

// ValueSchema returns the value schema JSON.
func (c *MessageCodec) ValueSchema() string { return messageValueSchema }

// KeyAvro returns the parsed key schema.
func (c *MessageCodec) KeyAvro() avro.Schema { return c.keyAvro }

// ValueAvro returns the parsed value schema.
func (c *MessageCodec) ValueAvro() avro.Schema { return c.valueAvro }

// SetIDs sets the registry ids written in the Confluent framing. Call it
// before the codec is shared between goroutines.
func (c *MessageCodec) SetIDs(keyID, valueID int) {
	c.keyHdr = framing(keyID)
	c.valueHdr = framing(valueID)
}

// AppendKey appends the framed MessageKey of a message with this prefix.
func (c *MessageCodec) AppendKey(dst, prefix []byte) []byte {
	dst = append(dst, c.keyHdr[:]...)
	return appendBytes(append(dst, branch1), prefix) // an Avro string is its length and bytes
}

// AppendValue appends the framed MessageValue of ev.
func (c *MessageCodec) AppendValue(dst []byte, ev *MessageEvent) []byte {
	dst = append(dst, c.valueHdr[:]...)
	dst = append(dst, 2, byte(OpMessage)) // op: "m"
	dst = appendLong(append(dst, branch1), ev.NowMs)
	// source
	dst = append(dst, c.srcHead...)
	dst = appendLong(dst, ev.TsMs)
	dst = appendString(append(dst, branch0), "false") // snapshot
	dst = append(dst, c.srcDB...)
	dst = appendOptLong(dst, ev.TxID)
	dst = appendOptLong(dst, ev.LSN)
	dst = append(dst, branch0) // xmin: null
	dst = append(dst, branch0) // transaction: null
	// message
	dst = appendBytes(append(dst, branch1), ev.Prefix)
	return appendBytes(append(dst, branch1), ev.Content)
}
