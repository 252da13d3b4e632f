package pipeline

import (
	"github.com/jackc/pglogrepl"

	"github.com/pgkafka/pgkafka/offsets"
)

// resumePoint is the checkpoint a session resumed from (nil: none), which
// tells what PostgreSQL sends again that Kafka holds already.
type resumePoint struct {
	cp *offsets.Checkpoint
}

// txInKafka tells whether the transaction committing at commitLSN is
// wholly in Kafka, or how many of its first changes are.
//
// Invariant: a change at or below the checkpoint is never produced twice.
// The checkpoint's LSN is the end of the last transaction in Kafka (or an
// idle position), so a transaction whose commit LSN is below it is in.
func (r resumePoint) txInKafka(commitLSN pglogrepl.LSN) (all bool, first int64) {
	cp := r.cp
	switch {
	case cp == nil:
		return false, 0
	case commitLSN < cp.LSN:
		return true, 0
	case cp.Partial != nil && cp.Partial.CommitLSN == commitLSN:
		return false, cp.Partial.Changes
	}
	return false, 0
}

// messageInKafka tells whether a non-transactional message is in Kafka
// already.
//
// Invariant: a message at or below the checkpoint is never produced twice.
// PostgreSQL does not send it again when started at its LSN; this guards
// the same for a checkpoint past it.
func (r resumePoint) messageInKafka(lsn pglogrepl.LSN) bool {
	return r.cp != nil && lsn <= r.cp.LSN
}

// txState is where the serializer stands in the stream's transactions.
type txState struct {
	open     bool // between a begin and its commit
	progress txProgress
	// inKafka: the transaction is wholly in Kafka already; else its first
	// inKafkaUpTo changes are.
	inKafka     bool
	inKafkaUpTo int64
}

// begin enters the transaction committing at commitLSN.
func (t *txState) begin(r resumePoint, commitLSN pglogrepl.LSN, xid uint32) {
	t.open = true
	t.progress = txProgress{commitLSN: commitLSN, xid: xid}
	t.inKafka, t.inKafkaUpTo = r.txInKafka(commitLSN)
}

// change counts a change of the transaction (a row change, a truncate or
// a transactional message) and reports whether Kafka holds it already.
func (t *txState) change() (inKafka bool) {
	t.progress.changes++
	return t.inKafka || t.progress.changes <= t.inKafkaUpTo
}
