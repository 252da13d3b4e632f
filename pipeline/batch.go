package pipeline

import (
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
)

// Batch limits. Every channel between stages holds at most chanCap batches,
// so these bound the pipeline's memory (see doc.go).
const (
	chanCap             = 2
	maxWALBatchBytes    = 1 << 20
	maxWALBatchMessages = 4096
	maxRecordBatchBytes = 4 << 20
	maxRecordBatchRecs  = 8192
)

// walBatch is a run of pgoutput messages copied out of the connection's
// buffer into one slab.
type walBatch struct {
	slab []byte
	msgs []walMsg
	// idleLSN, in a batch without messages, is a position the server
	// reported while nothing read was on its way to Kafka: checkpointing
	// it lets the slot follow an idle or filtered database.
	idleLSN pglogrepl.LSN
}

type walMsg struct {
	lsn      pglogrepl.LSN
	off, end int
}

// next is an empty batch sized like b was when it was sent: a stream
// fills its batches alike, and a slab grown from nothing by doubling
// copies every byte about once more.
func (b *walBatch) next() *walBatch {
	return &walBatch{slab: make([]byte, 0, len(b.slab)), msgs: make([]walMsg, 0, len(b.msgs))}
}

func (b *walBatch) add(lsn pglogrepl.LSN, data []byte) {
	off := len(b.slab)
	b.slab = append(b.slab, data...)
	b.msgs = append(b.msgs, walMsg{lsn: lsn, off: off, end: len(b.slab)})
}

func (b *walBatch) full() bool {
	return len(b.slab) >= maxWALBatchBytes || len(b.msgs) >= maxWALBatchMessages
}

// changeBatch is a decoded walBatch. Its changes' values alias wal's slab.
type changeBatch struct {
	wal     *walBatch
	changes []pgsrc.Change
	vals    []pgsrc.Value
	idleLSN pglogrepl.LSN // see walBatch.idleLSN
}

// recordBatch is a run of records in WAL order, cut only between two
// changes. Record keys and values alias slab.
type recordBatch struct {
	recs []kgo.Record
	slab []byte
	// hdrs holds the records' headers (kafka.headers), whose values
	// alias slab.
	hdrs []kgo.RecordHeader
	// commitLSN is the end LSN of the last PostgreSQL transaction the batch
	// completes (0 if none), or an idle position (see walBatch.idleLSN):
	// once Kafka holds the batch and everything before, the checkpoint, and
	// then the slot, may move up to it. commitTime is that transaction's.
	commitLSN  pglogrepl.LSN
	commitTime time.Time
	// partial is set when the batch ends inside a transaction; tx says how
	// far into it the batch's records go.
	partial bool
	tx      txProgress
	// inWindow is set when the batch ends while a backfill chunk's window
	// is open: the Kafka transaction must not commit before its high
	// watermark.
	inWindow bool
	// tables holds the tables whose backfill state changed.
	tables map[string]offsets.TableState
	// restart asks for a new session once the batch is committed (a
	// re-backfill request: the new session reads the tables again).
	restart bool
}

// txProgress is how far into one PostgreSQL transaction the records go.
type txProgress struct {
	commitLSN pglogrepl.LSN
	xid       uint32
	// changes counts its row changes whose records are written.
	changes int64
	// events counts its change records by table, for transaction
	// metadata (txmeta.go); nil when off.
	events map[string]int64
}

// next is an empty batch sized like b (see walBatch.next).
func (b *recordBatch) next() *recordBatch {
	return &recordBatch{recs: make([]kgo.Record, 0, len(b.recs)), slab: make([]byte, 0, len(b.slab)), hdrs: make([]kgo.RecordHeader, 0, len(b.hdrs))}
}

func (b *recordBatch) full() bool {
	return len(b.recs) >= maxRecordBatchRecs || len(b.slab) >= maxRecordBatchBytes
}
