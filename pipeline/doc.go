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
//	   ▲                                         ▲                    │
//	   │                       backfill ─chunkPlan, chunkResult       │
//	   └───────────────── committed LSN (atomic) ◀────────────────────┘
//
// # The parts, a file each
//
//   - runner.go: Runner, the public face, and Run's retry loop.
//   - session.go: one session, in named phases: open the source, open
//     Kafka (fencing, topics, checkpoint), prepare the source (slot,
//     prerequisites, reader), plan the backfills, wire the stages, run
//     them; its connections closed from one list.
//   - reader.go, decode.go, produce.go: the reader (the only one to talk
//     to the slot), the decoder, the transactional producer.
//   - serialize.go: the serializer's loop and where it cuts batches; it
//     asks codecs.go for the codec of each relation's shape (schema changes
//     in schemachange.go), dblog.go which changes a backfill lets pass and
//     which chunk to emit, toast.go for unchanged TOASTed values, binary.go
//     for binary keys as text, message.go for logical decoding messages,
//     resume.go for what Kafka holds already; encode.go writes the records
//     of row changes, outbox.go the events of outbox tables.
//   - backfill.go: the backfill stage, which reads the tables in chunks
//     between watermarks and encodes their rows; chunk.go is its handover
//     to the serializer's dblog (immutable plans and results, channels,
//     the window gate).
//   - batch.go: the batches and their limits; config.go, kafka.go: the
//     configuration and the Kafka client; metrics.go, progress.go,
//     status.go, tail.go: what operators see.
//
// Every piece of state has one owner: a stage's fields are its goroutine's;
// what crosses between goroutines is a batch handed over on a channel, an
// immutable chunk plan or result, or one of four synchronized values: the
// committed LSN (producer to reader), the count of low watermarks awaited
// (backfill to reader), the window gate (serializer to backfill), and the
// backfill progress (backfill to the Runner's readers, progress.go).

// # Memory bound
//
// A walBatch holds at most maxWALBatchBytes of WAL (1 MiB) and a
// recordBatch at most maxRecordBatchBytes of keys and values (4 MiB, plus one
// record). Each channel holds chanCap (2) batches and each stage holds one
// more in hand, so the stages hold at most about 3·(1+1) MiB of WAL and
// 3·4 MiB of records, and kgo buffers at most maxBufferedBytes (32 MiB)
// before Produce blocks: about 50 MiB whatever the table or transaction
// size. A transaction larger than a record batch is cut across batches.
// The TOAST reconciler (toast.go) adds its cache, toast.cacheBytes (32 MiB
// by default), and the rows it reads ahead from the database for one batch,
// toastFetchBytes (4 MiB) plus the row of the change at hand; the values
// it reads are given back once their change is encoded. A backfill chunk
// holds its rows twice (text and encoded) until it is emitted, at most
// maxChunkBytes (4 MiB) of text after a table's first chunk of
// firstChunkRows (8), two chunks per table being read; a table's reader
// reuses the buffers of the chunk emitted last for the next one
// (chunkBuffers).
//
// # Exactly once
//
// The producer writes in Kafka transactions (transactional id = the
// connector's name). Each holds whole PostgreSQL transactions, those that
// wait when it begins and come while it lasts (up to
// kafka.transactionWindow), then the checkpoint (offsets.Checkpoint: the end
// LSN of the last of them) as its last record; a PostgreSQL transaction is
// split only past kafka.maxTransactionRecords, the checkpoint then saying
// how many of its changes Kafka holds. After EndTransaction commits, the
// producer publishes the checkpoint's LSN; the reader alone sends it to the
// slot. When everything read is in Kafka, the reader sends the server's
// keepalive position down the pipeline to be checkpointed the same way, so
// an idle or filtered database never makes the slot hold WAL, and the slot
// never passes the checkpoint.
//
// A session starts by fencing any other instance of the name
// (ProducerID), reading the checkpoint as a read_committed consumer, and
// streaming from its LSN; the serializer drops what PostgreSQL sends again
// below it (and the first changes of a partly written transaction). A
// failed session is retried from the checkpoint by Runner.Run.
package pipeline
