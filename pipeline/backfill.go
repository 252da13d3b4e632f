package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// The backfill stage: its workers read the tables, chunk by chunk, and
// hand each chunk to the serializer (chunk.go), whose dblog (dblog.go)
// emits it in the stream.

// progressEvery is how often the backfill logs its progress.
const progressEvery = 5 * time.Second

// arenaValues is how many values a block of a chunk's rows holds.
const arenaValues = 1 << 14

// Chunk byte limits. A chunk's rows are held twice until the serializer
// emits it, as text in its slab and encoded, so backfill_chunk_size alone
// does not bound memory: a table's first chunk in a session holds at most
// firstChunkRows rows (and so does the second, planned while the first
// is read), and each next one at most as many rows of the last chunk's
// average size as fit in maxChunkBytes of text.
const (
	maxChunkBytes  = 4 << 20
	firstChunkRows = 8
)

// backfillStage reads the tables being backfilled, chunk by chunk, each
// chunk between two watermark writes. Up to one table per scanner is read
// at a time (source.advanced.backfill_parallelism); a table's chunks go in
// key order, and the next chunk is read while the serializer emits the
// last one. Its workers share the watermarks connection.
type backfillStage struct {
	cfg       *Config
	scanners  []*pgsrc.Scanner // one per worker
	jobs      []backfillJob
	chunkSize int // source.advanced.backfill_chunk_size
	plans     chan<- *chunkPlan
	// lowMarksAwaited counts the low watermarks the workers wait to see
	// opened (the reader hands its batches on at once meanwhile).
	lowMarksAwaited *atomic.Int32
	gate            *windowGate
	prog            *backfillProgress
	limit           *oversize // kafka.maxRecordBytes
	log             *slog.Logger

	watermarksMu sync.Mutex
	watermarks   *pgsrc.Watermarks

	// finished is set when every table is backfilled, before run returns.
	finished bool
}

// run backfills every table until done, soft ends (after the chunks in
// flight are emitted) or ctx ends.
func (s *backfillStage) run(ctx, soft context.Context) error {
	defer close(s.plans)
	next := make(chan backfillJob, len(s.jobs))
	for _, j := range s.jobs {
		next <- j
	}
	close(next)
	g, gctx := errgroup.WithContext(ctx)
	for _, sc := range s.scanners {
		g.Go(func() error {
			for j := range next {
				if soft.Err() != nil || gctx.Err() != nil {
					return nil
				}
				t := &tableReader{s: s, sc: sc, job: j, binary: s.cfg.textHashed(j.info, binaryColumns(j.info))}
				if err := t.run(gctx, soft); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if soft.Err() != nil {
		return nil
	}
	s.log.Info("backfills finished")
	s.finished = true
	return nil
}

// watermark writes a watermark; the workers share the connection.
func (s *backfillStage) watermark(ctx context.Context, value string) error {
	s.watermarksMu.Lock()
	defer s.watermarksMu.Unlock()
	return s.watermarks.Write(ctx, value)
}

// tableReader backfills one table with one scanner, in one worker's
// goroutine, from the job's cursor to the table's end or until soft ends.
type tableReader struct {
	s    *backfillStage
	sc   *pgsrc.Scanner
	job  backfillJob
	prog *tableProgress
	// binary says which columns are read in binary (binaryColumns).
	binary []bool
	// chunkRows is how many rows the next chunk may hold so that its
	// values stay within maxChunkBytes, from the last chunk's average row
	// (0: no chunk read yet in this session); chunkBytes sizes its slab,
	// encBytes its records' keys and values.
	chunkRows, chunkBytes, encBytes int
	// emitting is the last chunk read, which the serializer may still be
	// emitting, and emittingRes what was read of it.
	emitting    *chunkPlan
	emittingRes *chunkResult
	// spare holds the buffers of the last chunk emitted, which the next
	// read reuses (chunkBuffers).
	spare   chunkBuffers
	lastLog time.Time
}

// openedChunk is a chunk whose window is open, with the codec of its rows
// (plan nil: soft stop while held at the gate), or why not.
type openedChunk struct {
	plan *chunkPlan
	chunkOpening
	err error
}

// run reads the table. For a keyed table, chunk n+1 is planned and its
// window opened while chunk n is read: the two windows are contiguous in
// key order, and chunk n's high watermark precedes chunk n+1's in the WAL.
func (t *tableReader) run(ctx, soft context.Context) error {
	ref := t.job.info.Ref()
	t.begin(ctx)
	// The next chunk's opening runs beside the read: whatever way run
	// returns, it is stopped and waited for, so that it never writes a
	// watermark on a connection the session is closing.
	octx, cancelOpen := context.WithCancel(ctx)
	var opening sync.WaitGroup
	defer func() {
		cancelOpen()
		opening.Wait()
	}()
	var cur openedChunk
	if soft.Err() == nil {
		cur = t.plan(ctx, soft, t.job.cursor, t.job.ctid)
	}
	finished := false
	for cur.plan != nil || cur.err != nil {
		if cur.err != nil {
			return backfillError(ref, cur.err)
		}
		// A keyed table's next chunk is planned and opened while this one
		// is read, so that reading goes on from one chunk to the next
		// without waiting for the stream.
		var next chan openedChunk
		if t.job.order != nil && cur.plan.full && soft.Err() == nil {
			np, err := t.newPlan(ctx, cur.plan.end, "") // on the scanner, before the read
			if err != nil {
				return backfillError(ref, err)
			}
			next = make(chan openedChunk, 1) // the goroutine never blocks on it
			opening.Add(1)
			go func() {
				defer opening.Done()
				next <- t.open(octx, soft, np)
			}()
		}
		res, err := t.read(ctx, cur.plan, cur.chunkOpening)
		if err != nil {
			return backfillError(ref, err)
		}
		if err := t.waitEmitted(ctx); err != nil {
			return err
		}
		t.emitting, t.emittingRes = cur.plan, res
		t.progress(len(res.rows))
		switch {
		case next != nil:
			cur = <-next // plan nil: soft stop while held at the gate
		case !res.more:
			finished, cur = true, openedChunk{}
		case soft.Err() != nil:
			cur = openedChunk{}
		default: // a keyless table: the next chunk starts after this one's last ctid
			cur = t.plan(ctx, soft, nil, res.lastTID)
		}
	}
	if err := t.waitEmitted(ctx); err != nil || !finished {
		return err // nil: soft stop
	}
	t.prog.finish()
	v := t.prog.view()
	t.s.log.Info("backfill finished", "table", ref.String(), "rows", v.Rows, "took", v.Elapsed.Round(time.Millisecond).String())
	return nil
}

// begin starts the table's progress, counting the rows behind a resumed
// cursor as read, and warns of chunk queries that cannot walk an index.
func (t *tableReader) begin(ctx context.Context) {
	s, info := t.s, t.job.info
	ref := info.Ref()
	t.prog = s.prog.start(ref.String(), info.Estimated)
	t.lastLog = time.Now()
	resumed := t.job.cursor != nil || t.job.ctid != ""
	if resumed && info.Estimated > 0 {
		// Progress counts the rows behind the cursor as read. It is only
		// progress: without the estimate the backfill goes on.
		if left, err := t.sc.EstimateAfter(ctx, info, t.job.order, t.job.cursor, t.job.ctid); err != nil {
			s.log.Warn("cannot estimate the rows behind the backfill's cursor: its progress counts from there", "table", ref.String(), "err", err)
		} else {
			t.prog.before.Store(max(0, info.Estimated-left))
		}
	}
	if t.job.order != nil {
		if advice, err := t.sc.IndexAdvice(ctx, info, t.job.order, s.chunkSize); err != nil {
			s.log.Warn("cannot plan the backfill's chunk queries", "table", ref.String(), "err", err)
		} else if advice != "" {
			s.log.Warn("the backfill's chunk queries sort the rest of the table each time: its key is text in a collation other than C, compared byte-wise; an index in that order makes each chunk an index walk",
				"table", ref.String(), "sql", advice)
		}
	}
	s.log.Info("backfilling", "table", ref.String(), "estimated_rows", info.Estimated, "resumed", resumed)
}

// progress counts a chunk's rows and logs the table's progress every
// progressEvery.
func (t *tableReader) progress(rows int) {
	t.prog.add(rows)
	if time.Since(t.lastLog) < progressEvery {
		return
	}
	t.lastLog = time.Now()
	v := t.prog.view()
	t.s.log.Info("backfill progress", "table", t.job.info.Ref().String(), "rows", v.Before+v.Rows, "percent", percent(v), "eta", eta(v))
}

// waitEmitted waits until the serializer has emitted the last chunk read,
// and keeps its buffers for the next read.
func (t *tableReader) waitEmitted(ctx context.Context) error {
	if t.emitting == nil {
		return nil
	}
	select {
	case <-t.emitting.emitted:
		t.spare = t.emittingRes.reusable()
		t.emitting, t.emittingRes = nil, nil
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// nextChunkRows is how many rows the table's next chunk reads: at most
// chunkSize (source.advanced.backfill_chunk_size).
func (t *tableReader) nextChunkRows() int {
	if t.chunkRows == 0 {
		return min(t.s.chunkSize, firstChunkRows)
	}
	return min(t.s.chunkSize, t.chunkRows)
}

// backfillError wraps a failure of the backfill of ref. A table gone from
// under it (dropped, or renamed) is errBackfillTableGone: the session is
// retried, and the next one finds the table missing (settleDropped) and
// streams what is left of its changes, or stops for the rename.
func backfillError(ref pgsrc.TableRef, err error) error {
	if errors.Is(err, pgsrc.ErrTableNotFound) || pgsrc.IsUndefinedTable(err) {
		return fmt.Errorf("backfill of %s: %w: %w", ref, errBackfillTableGone, err)
	}
	return fmt.Errorf("backfill of %s: %w", ref, err)
}

// plan plans the chunk after the key after (or the ctid ctid) and opens
// its window.
func (t *tableReader) plan(ctx, soft context.Context, after [][]byte, ctid string) openedChunk {
	plan, err := t.newPlan(ctx, after, ctid)
	if err != nil {
		return openedChunk{err: err}
	}
	return t.open(ctx, soft, plan)
}

// open opens a planned chunk's window (it does not use the scanner).
func (t *tableReader) open(ctx, soft context.Context, plan *chunkPlan) openedChunk {
	o, err := t.s.open(ctx, soft, plan)
	if err != nil || o.tc == nil {
		return openedChunk{err: err}
	}
	return openedChunk{plan: plan, chunkOpening: o}
}

// newPlan plans the chunk after the key after (or the ctid ctid): for a
// keyed table, its end, which the scanner finds.
func (t *tableReader) newPlan(ctx context.Context, after [][]byte, ctid string) (*chunkPlan, error) {
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	plan := newChunkPlan(hex.EncodeToString(id), t.job.info.Ref(), t.nextChunkRows())
	plan.after, plan.ctid = after, ctid
	if t.job.order != nil {
		end, full, err := t.sc.ChunkEnd(ctx, t.job.info, t.job.order, after, plan.limit)
		if err != nil {
			return nil, err
		}
		plan.end, plan.full = end, full
	}
	return plan, nil
}

// open hands the serializer the plan, writes its low watermark and waits
// until the serializer has opened its window, returning what it hands
// over. It returns a nil codec when soft ends while the gate holds the
// chunk back.
func (s *backfillStage) open(ctx, soft context.Context, plan *chunkPlan) (chunkOpening, error) {
	if err := s.gate.wait(ctx); err != nil {
		return chunkOpening{}, err
	}
	if soft.Err() != nil {
		return chunkOpening{}, nil
	}
	if err := send(ctx, s.plans, plan); err != nil {
		return chunkOpening{}, err
	}
	s.lowMarksAwaited.Add(1)
	defer s.lowMarksAwaited.Add(-1)
	if err := s.watermark(ctx, lowMark+plan.id); err != nil {
		return chunkOpening{}, err
	}
	// Invariant: the chunk is read only after the serializer has seen the
	// low watermark, in a snapshot that sees every transaction committed
	// before it: a change the serializer dropped as beyond the cursor (it
	// came before the low watermark) is then always in the chunk.
	select {
	case o := <-plan.opened:
		return o, nil
	case <-ctx.Done():
		return chunkOpening{}, context.Cause(ctx)
	}
}

// read reads an opened chunk, in a snapshot that sees every commit the
// stream delivered before its low watermark, encoding its rows with the
// codec handed over as they come; it hands the result to the serializer
// and writes the high watermark.
func (t *tableReader) read(ctx context.Context, plan *chunkPlan, o chunkOpening) (*chunkResult, error) {
	tc := o.tc
	if err := t.sc.BeginConsistent(ctx, o.delivered); err != nil {
		return nil, err
	}
	rows := plan.limit
	res := &chunkResult{more: plan.full}
	res.chunkBuffers, t.spare = t.spare.reuse(t.chunkBytes, rows), chunkBuffers{}
	enc := newChunkEncoder(res, tc, t.s.limit, t.encBytes, rows)
	collect := func(row []pgsrc.Value) error {
		if err := enc.add(row); err != nil {
			return err
		}
		res.rows = append(res.rows, res.keep(res.values(len(row)), row))
		return nil
	}
	if t.job.order != nil {
		if _, err := t.sc.ScanChunk(ctx, t.job.info, t.job.order, plan.after, plan.end, t.binary, collect); err != nil {
			return nil, err
		}
	} else {
		last, n, err := t.sc.ScanCTID(ctx, t.job.info, plan.ctid, rows, t.binary, func(_ string, row []pgsrc.Value) error { return collect(row) })
		if err != nil {
			return nil, err
		}
		res.lastTID, res.more = last, n == rows
	}
	if err := t.sc.End(ctx); err != nil {
		return nil, err
	}
	if n := len(res.rows); n > 0 {
		avg := max(1, len(res.slab)/n)
		t.chunkRows = max(1, maxChunkBytes/avg)
		t.chunkBytes = t.nextChunkRows() * avg * 9 / 8
		t.encBytes = t.nextChunkRows() * max(1, len(res.enc)/n) * 9 / 8
	}
	plan.result <- res // capacity 1, sent once
	return res, t.s.watermark(ctx, highMark+plan.id)
}

// keep copies row's values into the result's slab, the Value headers into
// dst, and returns dst.
func (r *chunkResult) keep(dst, row []pgsrc.Value) []pgsrc.Value {
	start := len(r.slab)
	for _, v := range row {
		r.slab = append(r.slab, v.Data...)
	}
	off := start
	for i, v := range row {
		dst[i] = pgsrc.Value{Kind: v.Kind}
		if v.Kind == pgsrc.ValueText || v.Kind == pgsrc.ValueBinary {
			dst[i].Data = r.slab[off : off+len(v.Data) : off+len(v.Data)]
			off += len(v.Data)
		}
	}
	return dst
}

// eta and percent format a progress for the log.
func eta(p TableProgress) string {
	if d := p.ETA(); d >= 0 {
		return d.Round(time.Second).String()
	}
	return "unknown"
}

func percent(p TableProgress) string {
	if v := p.Percent(); v >= 0 {
		return fmt.Sprintf("%.1f", v)
	}
	return "unknown"
}

// chunkEncoder encodes a chunk's rows as 'r' records with its codec as the
// backfill stage reads them, so that encoding overlaps with PostgreSQL
// sending the rest. A table's chunks are read, so encoded, one after the
// other, and its codec serves no one else meanwhile.
type chunkEncoder struct {
	res   *chunkResult
	tc    *tableCodec
	limit *oversize
	ev    schema.Event
	after []schema.Datum
}

// newChunkEncoder encodes into res, whose enc it makes encBytes large (0:
// unknown, from the row count and an estimate).
func newChunkEncoder(res *chunkResult, tc *tableCodec, limit *oversize, encBytes, chunkSize int) *chunkEncoder {
	e := &chunkEncoder{res: res, tc: tc, limit: limit, ev: schema.Event{Op: schema.OpRead, TxID: -1, LSN: -1, Snapshot: "true"}}
	e.ev.NowMs = time.Now().UnixMilli()
	e.ev.TsMs = e.ev.NowMs
	if encBytes == 0 {
		encBytes = chunkSize * encodedRowOverhead(tc)
	}
	res.recs = slices.Grow(res.recs[:0], chunkSize)
	res.enc = make([]byte, 0, encBytes)
	return e
}

// add encodes row, which it does not keep; a row its type cannot
// represent, or too large and skipped (kafka.oversizedRecords), gets a
// record with a nil Value.
func (e *chunkEncoder) add(row []pgsrc.Value) error {
	res, tc := e.res, e.tc
	if len(row) != len(tc.rel.Columns) {
		return fmt.Errorf("a row of %d columns for %d: the table changed during the backfill; the next session reads it again", len(row), len(tc.rel.Columns))
	}
	e.after = datums(e.after, row)
	e.ev.After = e.after
	var key []byte
	var err error
	if tc.codec.Keyed() {
		off := len(res.enc)
		if res.enc, err = tc.codec.AppendKey(res.enc, e.after); err != nil {
			return fmt.Errorf("encoding the key of a row: %w", err)
		}
		key = res.enc[off:len(res.enc):len(res.enc)]
	}
	off := len(res.enc)
	res.enc, err = tc.codec.AppendValue(res.enc, &e.ev)
	switch {
	case errors.Is(err, schema.ErrNotRepresentable):
		res.enc = res.enc[:off]
		res.recs = append(res.recs, kgo.Record{})
	case err != nil:
		return fmt.Errorf("encoding a row: %w", err)
	default:
		rec := kgo.Record{Topic: tc.topic, Key: key, Value: res.enc[off:len(res.enc):len(res.enc)]}
		if !e.limit.fits(rec.Key, rec.Value) {
			dead, err := e.limit.handle(&rec, recordSite{tc: tc, keyRow: e.after, op: schema.OpRead})
			res.enc = res.enc[:off]
			if err != nil {
				return err
			}
			rec = kgo.Record{}
			if dead != nil {
				rec = *dead
			}
		} else if tc.headers != nil {
			start := len(res.hdrs)
			res.hdrs, res.enc = tc.headers.appendTo(res.hdrs, res.enc, schema.OpRead, -1, -1, e.ev.TsMs)
			rec.Headers = res.hdrs[start:len(res.hdrs):len(res.hdrs)]
		}
		res.recs = append(res.recs, rec)
	}
	return nil
}

// encodedRowOverhead is about how many bytes a row's record takes beyond
// its values' text: the envelope, source block and key.
func encodedRowOverhead(tc *tableCodec) int { return 160 + 8*len(tc.rel.Columns) }

// binaryColumns says, for each column a backfill reads (those pgoutput
// sends), whether it is read in its type's binary send format: when
// pgkafka decodes that format (schema.BinarySafe), but for key columns,
// whose text the chunk cursors and the stream's keys are compared in.
// PostgreSQL sends a timestamp or a number in binary for much less work
// than it prints it, and pgkafka reads it for less than it parses the
// text; the records are the same either way.
func binaryColumns(info *pgsrc.Table) []bool {
	var binary []bool
	for i := range info.Columns {
		c := &info.Columns[i]
		if !c.Sent() {
			continue
		}
		typ, mod := c.Resolved()
		if c.Type.Kind != pgsrc.KindDomain {
			mod = c.Typmod
		}
		binary = append(binary, !slices.Contains(info.KeyColumns, c.Name) && schema.BinarySafe(schemaType(typ, mod)))
	}
	return binary
}
