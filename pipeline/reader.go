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
	// idleAdvanceEvery is how often an idle stream checkpoints the server's
	// position (a Kafka transaction holding just the checkpoint).
	idleAdvanceEvery = 5 * time.Second
)

// readerStage pulls the replication stream into walBatches and alone talks
// to the slot: it confirms what the producer has committed.
type readerStage struct {
	src       *pgsrc.Reader
	committed *atomic.Uint64 // end LSN of the last transaction Kafka holds
	log       *slog.Logger
	// awaited counts the low watermarks the backfill waits to see opened:
	// while it is not zero, a batch goes downstream at each commit instead
	// of lingering, since a backfill chunk waits on it.
	awaited *atomic.Int32

	inTx          bool          // between a begin and its commit
	lastCommitEnd pglogrepl.LSN // end LSN of the last commit (or non-transactional message) read
	keepaliveEnd  pglogrepl.LSN // server WAL end of the last keepalive
	advanced      pglogrepl.LSN // last idle position sent downstream
	lastAdvance   time.Time
	confirmed     pglogrepl.LSN // last LSN sent in a standby status
	lastRecv      time.Time
}

// run reads until ctx ends (hard stop) or soft ends (soft stop: it stops
// after the transaction in progress, so the batches sent hold whole ones).
func (s *readerStage) run(ctx, soft context.Context, out chan<- *walBatch) error {
	defer close(out)
	var (
		b          = &walBatch{}
		batchStart time.Time
		nextStatus = time.Now().Add(statusInterval)
		stopReq    bool
	)
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
			if len(b.msgs) > 0 {
				return send(ctx, out, b)
			}
			return nil
		}
		want := nextStatus
		if len(b.msgs) > 0 && batchStart.Add(batchLinger).Before(want) {
			want = batchStart.Add(batchLinger)
		}
		if win.ctx == nil || win.ctx.Err() != nil || !want.Equal(win.until) {
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
			if len(msg.Data) > 0 {
				switch msg.Data[0] {
				case 'B':
					s.inTx = true
				case 'C':
					s.inTx = false
					if len(msg.Data) >= 18 {
						s.lastCommitEnd = pglogrepl.LSN(binary.BigEndian.Uint64(msg.Data[10:18]))
					}
				case 'M':
					// A non-transactional message is checkpointed at its
					// LSN, as a commit at its end.
					if !s.inTx && len(msg.Data) >= 10 && msg.Data[1]&1 == 0 {
						s.lastCommitEnd = max(s.lastCommitEnd, pglogrepl.LSN(binary.BigEndian.Uint64(msg.Data[2:10])))
					}
				}
			}
			if len(b.msgs) == 0 {
				batchStart = now
			}
			b.add(msg.WALStart, msg.Data)
			if b.full() {
				if err := s.sendWithStatus(ctx, out, b, &nextStatus); err != nil {
					return err
				}
				b = &walBatch{}
			}
		case pgsrc.MessageKeepalive:
			s.lastRecv = now
			s.keepaliveEnd = max(s.keepaliveEnd, msg.ServerWALEnd)
			if msg.ReplyRequested {
				nextStatus = now
			}
		case pgsrc.MessageNone:
			if now.Sub(s.lastRecv) > livenessTimeout {
				return fmt.Errorf("replication stream silent for %s: the connection is presumed dead", livenessTimeout)
			}
		}
		if len(b.msgs) > 0 && (!now.Before(batchStart.Add(batchLinger)) || !s.inTx && s.awaited != nil && s.awaited.Load() > 0) {
			if err := s.sendWithStatus(ctx, out, b, &nextStatus); err != nil {
				return err
			}
			b = &walBatch{}
		}
		if !now.Before(nextStatus) {
			if len(b.msgs) == 0 {
				s.advanceIdle(out, now)
			}
			if err := s.status(ctx); err != nil {
				return err
			}
			nextStatus = now.Add(statusInterval)
		}
	}
}

// advanceIdle sends the server's position downstream, to be checkpointed,
// when nothing read is on its way to Kafka: no open transaction and the
// last commit read acknowledged. Every change before the position has been
// read (the stream is in order), so none is skipped by resuming there.
func (s *readerStage) advanceIdle(out chan<- *walBatch, now time.Time) {
	committed := pglogrepl.LSN(s.committed.Load())
	if s.inTx || committed < s.lastCommitEnd || s.keepaliveEnd <= max(committed, s.advanced) || now.Sub(s.lastAdvance) < idleAdvanceEvery {
		return
	}
	select {
	case out <- &walBatch{idleLSN: s.keepaliveEnd}:
		s.advanced, s.lastAdvance = s.keepaliveEnd, now
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
func (s *readerStage) sendWithStatus(ctx context.Context, out chan<- *walBatch, b *walBatch, nextStatus *time.Time) error {
	t := time.NewTimer(time.Until(*nextStatus))
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
			*nextStatus = time.Now().Add(statusInterval)
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
