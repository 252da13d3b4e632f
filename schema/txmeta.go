package schema

import (
	"context"
	"fmt"

	"github.com/hamba/avro/v2"
)

// Transaction metadata (format.transactionMetadata, Debezium's
// provide.transaction.metadata): a BEGIN and an END record per database
// transaction on the <topicPrefix>.transaction topic, and the transaction
// block of each change record. The schemas are the Avro that Confluent's
// converter derives from Debezium's Connect schemas (SchemaFactory's
// transactionKeySchema, transactionValueSchema, transactionBlockSchema and
// transactionEventCountPerDataCollectionSchema).

// Full names of the transaction metadata records.
const (
	TxMetaKeyFullName   = "io.debezium.connector.common.TransactionMetadataKey"
	TxMetaValueFullName = "io.debezium.connector.common.TransactionMetadataValue"
)

const txMetaKeySchema = `{"type":"record","name":"TransactionMetadataKey","namespace":"io.debezium.connector.common","fields":[` +
	`{"name":"id","type":"string"}` +
	`],"connect.version":1,"connect.name":"io.debezium.connector.common.TransactionMetadataKey"}`

const txMetaValueSchema = `{"type":"record","name":"TransactionMetadataValue","namespace":"io.debezium.connector.common","fields":[` +
	`{"name":"status","type":"string"},` +
	`{"name":"id","type":"string"},` +
	`{"name":"event_count","type":["null","long"],"default":null},` +
	`{"name":"data_collections","type":["null",{"type":"array","items":["null",{"type":"record","name":"collection","namespace":"event","fields":[` +
	`{"name":"data_collection","type":"string"},` +
	`{"name":"event_count","type":"long"}` +
	`],"connect.version":1,"connect.name":"event.collection"}]}],"default":null},` +
	`{"name":"ts_ms","type":"long"}` +
	`],"connect.version":1,"connect.name":"io.debezium.connector.common.TransactionMetadataValue"}`

// TxBlock is a change record's transaction block: the transaction's id,
// the record's 1-based position among the transaction's records and among
// its table's.
type TxBlock struct {
	ID                  string
	TotalOrder          int64
	DataCollectionOrder int64
}

// appendTxBlock writes the envelope's transaction field: ["null",
// event.block].
func appendTxBlock(dst []byte, b *TxBlock) []byte {
	if b == nil {
		return append(dst, branch0)
	}
	dst = appendString(append(dst, branch1), b.ID)
	dst = appendLong(dst, b.TotalOrder)
	return appendLong(dst, b.DataCollectionOrder)
}

// TxCount is one table's record count in an END record.
type TxCount struct {
	DataCollection string // <schema>.<table>
	EventCount     int64
}

// TxMetaCodec encodes the records of the transaction topic. After SetIDs
// it is read-only.
type TxMetaCodec struct {
	topic              string
	keyAvro, valueAvro avro.Schema
	keyHdr, valueHdr   [5]byte
}

// NewTxMetaCodec returns the codec of the transaction topic.
func NewTxMetaCodec(topic string) (*TxMetaCodec, error) {
	if topic == "" {
		return nil, fmt.Errorf("transaction metadata schema: no topic")
	}
	c := &TxMetaCodec{topic: topic}
	cache := &avro.SchemaCache{}
	var err error
	if c.keyAvro, err = avro.ParseWithCache(txMetaKeySchema, "", cache); err != nil {
		return nil, fmt.Errorf("transaction metadata key schema invalid: %w", err)
	}
	if c.valueAvro, err = avro.ParseWithCache(txMetaValueSchema, "", cache); err != nil {
		return nil, fmt.Errorf("transaction metadata value schema invalid: %w", err)
	}
	return c, nil
}

// Topic returns the transaction topic.
func (c *TxMetaCodec) Topic() string { return c.topic }

// KeySchema returns the key schema JSON.
func (c *TxMetaCodec) KeySchema() string { return txMetaKeySchema }

// ValueSchema returns the value schema JSON.
func (c *TxMetaCodec) ValueSchema() string { return txMetaValueSchema }

// KeyAvro returns the parsed key schema.
func (c *TxMetaCodec) KeyAvro() avro.Schema { return c.keyAvro }

// ValueAvro returns the parsed value schema.
func (c *TxMetaCodec) ValueAvro() avro.Schema { return c.valueAvro }

// SetIDs sets the registry ids written in the Confluent framing.
func (c *TxMetaCodec) SetIDs(keyID, valueID int) {
	c.keyHdr = framing(keyID)
	c.valueHdr = framing(valueID)
}

// AppendKey appends the framed TransactionMetadataKey {id}.
func (c *TxMetaCodec) AppendKey(dst []byte, id string) []byte {
	return appendString(append(dst, c.keyHdr[:]...), id)
}

// AppendBegin appends the framed BEGIN value: no counts.
func (c *TxMetaCodec) AppendBegin(dst []byte, id string, tsMs int64) []byte {
	dst = append(dst, c.valueHdr[:]...)
	dst = appendString(dst, "BEGIN")
	dst = appendString(dst, id)
	dst = append(dst, branch0, branch0) // event_count, data_collections: null
	return appendLong(dst, tsMs)
}

// AppendEnd appends the framed END value: the transaction's record count
// and each table's.
func (c *TxMetaCodec) AppendEnd(dst []byte, id string, tsMs, events int64, tables []TxCount) []byte {
	dst = append(dst, c.valueHdr[:]...)
	dst = appendString(dst, "END")
	dst = appendString(dst, id)
	dst = appendLong(append(dst, branch1), events)
	dst = append(dst, branch1)
	if len(tables) > 0 {
		dst = appendLong(dst, int64(len(tables)))
		for _, t := range tables {
			dst = appendString(append(dst, branch1), t.DataCollection)
			dst = appendLong(dst, t.EventCount)
		}
	}
	dst = append(dst, 0) // the array's end
	return appendLong(dst, tsMs)
}

// RegisterTxMeta registers the transaction topic's key and value schemas
// under <topic>-key and <topic>-value (or finds them there) and sets the
// codec's ids.
func (r *Registry) RegisterTxMeta(ctx context.Context, c *TxMetaCodec) error {
	var ids [2]int
	for i, sub := range [2][2]string{{c.topic + "-key", txMetaKeySchema}, {c.topic + "-value", txMetaValueSchema}} {
		id, known, err := r.lookup(ctx, sub[0], sub[1])
		if err != nil {
			return r.red.Error(err)
		}
		if !known {
			parsed := c.keyAvro
			if i == 1 {
				parsed = c.valueAvro
			}
			if id, err = r.register(ctx, sub[0], sub[1], parsed); err != nil {
				return r.red.Error(err)
			}
		}
		ids[i] = id
	}
	c.SetIDs(ids[0], ids[1])
	return nil
}
