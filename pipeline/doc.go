// Package pipeline wires pgkafka's stages: the replication reader, the
// pgoutput decoder, the serializer (PostgreSQL rows to Avro records) and the
// Kafka producer, and owns the LSN feedback from the producer to the slot.
//
// # Stages and channels
//
// Each stage is one goroutine reading batches from a bounded channel and
// writing batches to the next; a full channel blocks the stage before it.
// Closing a stage's output tells the next one that nothing more comes.
//
//	reader ─walBatch▶ decoder ─changeBatch▶ serializer ─recordBatch▶ producer
//	   ▲                                                              │
//	   └───────────────── committed LSN (atomic) ◀────────────────────┘
//
// # Memory bound
//
// A walBatch holds at most maxWALBatchBytes of WAL (1 MiB) and a
// recordBatch at most maxRecordBatchBytes of keys and values (4 MiB, plus one
// record). Each channel holds chanCap (2) batches and each stage holds one
// more in hand, so the stages hold at most about 3·(1+1) MiB of WAL and
// 3·4 MiB of records, and kgo buffers at most maxBufferedBytes (32 MiB)
// before Produce blocks: about 50 MiB whatever the table or transaction
// size. A transaction larger than a record batch is cut across batches; the
// slot is confirmed only at transaction ends.
//
// # Confirming LSNs
//
// The producer publishes the end LSN of the last transaction whose records
// Kafka acknowledged; the reader alone sends it to the slot. When everything
// read has been acknowledged, the reader confirms the server's keepalive
// position, so an idle or filtered database never makes the slot hold WAL.
package pipeline
