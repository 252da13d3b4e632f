package pipeline

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// Reader timing.
const (
	// statusInterval is how often standby status goes to the server.
	statusInterval = 2 * time.Second
	// batchLinger is how long a partly filled walBatch may wait.
	batchLinger = 5 * time.Millisecond
	// livenessTimeout fails the stream when the server has sent nothing,
	// not even a keepalive, for this long.
	livenessTimeout = 3 * time.Minute
	// idleSendEvery is how often an idle stream checkpoints the server's
	// position (a Kafka transaction holding just the checkpoint).
	idleSendEvery = 5 * time.Second
)

// readerStage pulls the replication stream into walBatches and alone talks
// to the slot: it confirms what the producer has committed.
type readerStage struct {
	src       *pgsrc.Reader
	committed *atomic.Uint64 // end LSN of the last transaction Kafka holds
	log       *slog.Logger
	// lowMarksAwaited counts the low watermarks the backfill waits to see
	// opened: while it is not zero, a batch goes downstream at each commit
	// instead of lingering, since a backfill chunk waits on it.
	lowMarksAwaited *atomic.Int32

	inTx          bool          // between a begin and its commit
	lastCommitEnd pglogrepl.LSN // end LSN of the last commit (or non-transactional message) read
	keepaliveEnd  pglogrepl.LSN // server WAL end of the last keepalive
	idleSent      pglogrepl.LSN // last idle position sent downstream
	lastIdleSent  time.Time
	confirmed     pglogrepl.LSN // last LSN sent in a standby status
	lastRecv      time.Time

	batch      *walBatch // being filled
	batchStart time.Time // when its first message came
	nextStatus time.Time // when standby status is due
}

// run reads until ctx ends (hard stop) or soft ends (soft stop: it stops
// after the transaction in progress, so the batches sent hold whole ones).
func (s *readerStage) run(ctx, soft context.Context, out chan<- *walBatch) error {
	defer close(out)
	s.batch = &walBatch{}
	s.nextStatus = time.Now().Add(statusInterval)
	stopReq := false
	// win ends at the next moment the loop must act, or when a soft stop
	// is requested; it is reused across receives until then.
	var win window
	defer win.close()
	s.lastRecv = time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		stopReq = stopReq || soft.Err() != nil
		if stopReq && !s.inTx {
			// Soft stop: the last transaction read is whole.
			if len(s.batch.msgs) > 0 {
				return send(ctx, out, s.batch)
			}
			return nil
		}
		if want := s.wakeAt(); win.ctx == nil || win.ctx.Err() != nil || !want.Equal(win.until) {
			parent := soft
			if stopReq {
				parent = ctx // finishing the open transaction despite the stop
			}
			win.reset(parent, want)
		}
		msg, err := s.src.Receive(win.ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		switch msg.Kind {
		case pgsrc.MessageWAL:
			s.lastRecv = now
			if err := s.addWAL(ctx, out, msg, now); err != nil {
				return err
			}
		case pgsrc.MessageKeepalive:
			s.lastRecv = now
			s.keepaliveEnd = max(s.keepaliveEnd, msg.ServerWALEnd)
			if msg.ReplyRequested {
				s.nextStatus = now
			}
		case pgsrc.MessageNone:
			if now.Sub(s.lastRecv) > livenessTimeout {
				return fmt.Errorf("replication stream silent for %s: the connection is presumed dead", livenessTimeout)
			}
		}
		if s.flushDue(now) {
			if err := s.flush(ctx, out); err != nil {
				return err
			}
		}
		if !now.Before(s.nextStatus) {
			if len(s.batch.msgs) == 0 {
				s.sendIdlePosition(out, now)
			}
			if err := s.status(ctx); err != nil {
				return err
			}
			s.nextStatus = now.Add(statusInterval)
		}
	}
}

// wakeAt is when the loop must act next: standby status is due, or the
// batch has lingered enough.
func (s *readerStage) wakeAt() time.Time {
	want := s.nextStatus
	if len(s.batch.msgs) > 0 && s.batchStart.Add(batchLinger).Before(want) {
		want = s.batchStart.Add(batchLinger)
	}
	return want
}

// addWAL follows the transaction msg is part of, adds msg to the batch,
// and sends the batch on when it is full.
func (s *readerStage) addWAL(ctx context.Context, out chan<- *walBatch, msg pgsrc.Message, now time.Time) error {
	s.track(msg.Data)
	if len(s.batch.msgs) == 0 {
		s.batchStart = now
	}
	s.batch.add(msg.WALStart, msg.Data)
	if s.batch.full() {
		return s.flush(ctx, out)
	}
	return nil
}

// track follows transactions from a pgoutput message: whether one is
// open, and the end LSN of the last commit.
func (s *readerStage) track(data []byte) {
	if len(data) == 0 {
		return
	}
	switch data[0] {
	case 'B':
		s.inTx = true
	case 'C':
		s.inTx = false
		if len(data) >= 18 {
			s.lastCommitEnd = pglogrepl.LSN(binary.BigEndian.Uint64(data[10:18]))
		}
	case 'M':
		// A non-transactional message is checkpointed at its
		// LSN, as a commit at its end.
		if !s.inTx && len(data) >= 10 && data[1]&1 == 0 {
			s.lastCommitEnd = max(s.lastCommitEnd, pglogrepl.LSN(binary.BigEndian.Uint64(data[2:10])))
		}
	}
}

// flushDue reports whether the batch goes downstream now: it has lingered
// enough, or it ends at a commit while the backfill awaits a low
// watermark.
func (s *readerStage) flushDue(now time.Time) bool {
	return len(s.batch.msgs) > 0 && (!now.Before(s.batchStart.Add(batchLinger)) ||
		!s.inTx && s.lowMarksAwaited != nil && s.lowMarksAwaited.Load() > 0)
}

// flush sends the batch downstream and starts the next.
func (s *readerStage) flush(ctx context.Context, out chan<- *walBatch) error {
	next := s.batch.next() // before the batch is another stage's
	if err := s.sendWithStatus(ctx, out, s.batch); err != nil {
		return err
	}
	s.batch = next
	return nil
}

// sendIdlePosition sends the server's position downstream, to be checkpointed,
// when nothing read is on its way to Kafka: no open transaction and the
// last commit read acknowledged. Every change before the position has been
// read (the stream is in order), so none is skipped by resuming there.
func (s *readerStage) sendIdlePosition(out chan<- *walBatch, now time.Time) {
	committed := pglogrepl.LSN(s.committed.Load())
	if s.inTx || committed < s.lastCommitEnd || s.keepaliveEnd <= max(committed, s.idleSent) || now.Sub(s.lastIdleSent) < idleSendEvery {
		return
	}
	select {
	case out <- &walBatch{idleLSN: s.keepaliveEnd}:
		s.idleSent, s.lastIdleSent = s.keepaliveEnd, now
	default: // the pipeline is busy: not idle after all
	}
}

// window is a receive deadline shared by the receives before it.
type window struct {
	ctx    context.Context
	cancel context.CancelFunc
	until  time.Time
}

func (w *window) reset(parent context.Context, until time.Time) {
	w.close()
	w.ctx, w.cancel = context.WithDeadline(parent, until)
	w.until = until
}

func (w *window) close() {
	if w.cancel != nil {
		w.cancel()
	}
}

// sendWithStatus hands b downstream; while the channel is full it keeps
// sending standby status so the server does not time the stream out.
func (s *readerStage) sendWithStatus(ctx context.Context, out chan<- *walBatch, b *walBatch) error {
	t := time.NewTimer(time.Until(s.nextStatus))
	defer t.Stop()
	for {
		select {
		case out <- b:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
			if err := s.status(ctx); err != nil {
				return err
			}
			s.nextStatus = time.Now().Add(statusInterval)
			t.Reset(statusInterval)
		}
	}
}

// status confirms to the slot what Kafka holds.
func (s *readerStage) status(ctx context.Context) error {
	// Invariant: the slot is confirmed only up to the LSN of the last
	// checkpoint committed in Kafka (the producer publishes it after
	// EndTransaction), and only forward: the slot follows Kafka, never leads.
	lsn := max(pglogrepl.LSN(s.committed.Load()), s.confirmed)
	if err := s.src.SendStatus(ctx, lsn); err != nil {
		return err
	}
	if lsn != s.confirmed {
		s.log.Debug("standby status", "lsn", lsn.String())
	}
	s.confirmed = lsn
	return nil
}
