package pipeline

import (
	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

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
}

type walMsg struct {
	lsn      pglogrepl.LSN
	off, end int
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
}

// recordBatch is what the producer writes as one unit. Record keys and
// values alias slab. commitLSN is the end LSN of the last PostgreSQL
// transaction the batch completes (0 if none): once every record is
// acknowledged, the slot may be confirmed up to it.
type recordBatch struct {
	recs      []kgo.Record
	slab      []byte
	commitLSN pglogrepl.LSN
	// partial is set when the batch ends inside a transaction (a
	// transaction larger than one batch).
	partial bool
}

func (b *recordBatch) full() bool {
	return len(b.recs) >= maxRecordBatchRecs || len(b.slab) >= maxRecordBatchBytes
}
