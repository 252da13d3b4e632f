package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// serializerStage turns changes into Kafka records, in WAL order, and cuts
// record batches only where the producer may use them: at transaction
// ends, or inside a transaction larger than a batch. It asks its parts:
//
//   - codecs (codecs.go): the codec of each relation's shape;
//   - dblog (dblog.go): which changes a backfill lets pass, and the chunks
//     to emit at their high watermarks;
//   - toast (toast.go): the unchanged TOASTed values of updates;
//   - keyText (binary.go): binary key values as text, in binary mode;
//   - messages (message.go): logical decoding messages;
//   - resumed (resume.go): what Kafka holds already of what is sent again.
//
// Row changes are encoded by encode.go.
type serializerStage struct {
	codecs   *codecs
	dblog    *dblog
	toast    *toastReconciler
	keyText  *keyText // nil when pgoutput streams text
	messages *messageTopic
	outbox   *outboxRouter // outbox.go
	resumed  resumePoint
	log      *slog.Logger
	rows     rowEncoder
}

// batcher is the record batch the serializer fills and hands on.
type batcher struct {
	out chan<- *recordBatch
	rb  *recordBatch
}

// pending reports whether the batch holds anything for the producer.
func (b *batcher) pending() bool {
	return len(b.rb.recs) > 0 || b.rb.commitLSN != 0 || b.rb.tables != nil
}

// ship hands the batch on, and starts the next: the one place a batch
// leaves the serializer. A batch ending inside a chunk window says so: the
// producer must not commit after it.
func (s *serializerStage) ship(ctx context.Context, b *batcher) error {
	b.rb.inWindow = s.dblog.holding()
	next := b.rb.next() // before the batch is the producer's
	if err := send(ctx, b.out, b.rb); err != nil {
		return err
	}
	b.rb = next
	return nil
}

func (s *serializerStage) run(ctx context.Context, in <-chan *changeBatch, out chan<- *recordBatch) error {
	defer close(out)
	b := &batcher{out: out, rb: &recordBatch{}}
	var tx txState
	for cb := range in {
		nowMs := time.Now().UnixMilli()
		if s.keyText != nil {
			if err := s.keyText.render(ctx, s.codecs, cb); err != nil {
				return err
			}
		}
		s.toast.batch(cb.changes)
		for i := range cb.changes {
			restart, err := s.change(ctx, &cb.changes[i], &tx, b, nowMs)
			if err != nil || restart {
				return err // after a restart batch, the producer restarts the session
			}
		}
		if !tx.open {
			if err := s.codecs.checkDrops(ctx, time.Now()); err != nil {
				return err
			}
			s.codecs.passDrops(cb.idleLSN, b.rb)
		}
		if cb.idleLSN != 0 && !tx.open {
			b.rb.commitLSN = max(b.rb.commitLSN, cb.idleLSN)
		}
		if !tx.open && b.pending() {
			if err := s.ship(ctx, b); err != nil {
				return err
			}
		}
	}
	// The reader ends only between transactions; anything else is a failure
	// upstream, and the open transaction is resent after the restart.
	if !tx.open && !s.dblog.holding() && b.pending() {
		return s.ship(ctx, b)
	}
	return nil
}

// change handles one change. restart is true once the batch asking for a
// new session (a re-backfill) is sent.
func (s *serializerStage) change(ctx context.Context, ch *pgsrc.Change, tx *txState, b *batcher, nowMs int64) (restart bool, err error) {
	switch {
	case ch.Op == pgsrc.OpBegin:
		tx.begin(s.resumed, ch.CommitLSN, ch.Xid)
		s.rows.txm.begin(s.resumed, ch)
		return false, nil
	case ch.Op == pgsrc.OpCommit:
		return s.commit(ctx, ch, tx, b)
	case ch.Op == pgsrc.OpRelation:
		return false, s.codecs.onRelation(ctx, ch.Rel, ch.CommitLSN)
	case ch.Op == pgsrc.OpMessage && !ch.Transactional:
		return false, s.untransactedMessage(ctx, ch, tx, b, nowMs)
	}
	// A row change, a truncate or a transactional message: a change of the
	// transaction, counted for the resume.
	if tx.change() {
		return false, nil // Kafka has it: PostgreSQL sent it again
	}
	if ch.Op == pgsrc.OpMessage {
		s.encodeMessage(ch, nowMs, b.rb)
	} else if err := s.encode(ctx, ch, nowMs, b.rb); err != nil {
		return false, err
	}
	s.toast.release(ch)
	if tx.open && b.rb.full() {
		// A transaction larger than a batch: cut it between two changes;
		// its progress goes with the batch.
		b.rb.partial, b.rb.tx = true, tx.progress
		b.rb.tx.events = s.rows.txm.progress()
		return false, s.ship(ctx, b)
	}
	return false, nil
}

// commit ends a transaction: the batch completes it, and ends there when
// full, when the last chunk window has closed (the producer may commit),
// or when a re-backfill restarts the session.
func (s *serializerStage) commit(ctx context.Context, ch *pgsrc.Change, tx *txState, b *batcher) (restart bool, err error) {
	tx.open = false
	s.rows.txm.end(b.rb)
	s.dblog.noteCommit(tx.progress.xid)
	if !tx.inKafka {
		b.rb.commitLSN, b.rb.commitTime = ch.EndLSN, ch.CommitTime
	}
	s.codecs.passDrops(ch.EndLSN, b.rb)
	if s.dblog.restartDue() || s.codecs.restartPending && !s.dblog.holding() {
		b.rb.restart = true
		return true, s.ship(ctx, b)
	}
	if s.dblog.takeCommitPoint() || b.rb.full() {
		return false, s.ship(ctx, b)
	}
	return false, nil
}

// untransactedMessage handles a non-transactional logical decoding
// message. Between transactions (protocol 1 never interleaves one), its
// LSN is a position to checkpoint, as a commit's end is (message.go).
func (s *serializerStage) untransactedMessage(ctx context.Context, ch *pgsrc.Change, tx *txState, b *batcher, nowMs int64) error {
	if s.resumed.messageInKafka(ch.LSN) {
		return nil
	}
	s.encodeMessage(ch, nowMs, b.rb)
	if tx.open {
		return nil
	}
	b.rb.commitLSN = max(b.rb.commitLSN, ch.LSN)
	if b.rb.full() {
		return s.ship(ctx, b)
	}
	return nil
}
