package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Version is pgkafka's version, written in source.version.
const Version = "0.1.0"

// closeTimeout bounds the clean-up work done after the stages end.
const closeTimeout = 10 * time.Second

// Runner runs one capture: prerequisites, then the stages until stopped.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics

	stopOnce sync.Once
	stop     chan struct{}

	committed      atomic.Uint64
	progress       *backfillProgress
	readyOnce      sync.Once
	ready          chan struct{}
	backfilledOnce sync.Once
	backfilled     chan struct{}
}

// NewRunner validates cfg (defaults already applied) and returns a Runner.
func NewRunner(cfg Config, log *slog.Logger) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := newMetrics()
	return &Runner{cfg: cfg, log: log, metrics: m, progress: newBackfillProgress(m),
		stop: make(chan struct{}), ready: make(chan struct{}), backfilled: make(chan struct{})}, nil
}

// BackfillProgress returns the progress of every table this Runner has
// backfilled or is backfilling, by name.
func (r *Runner) BackfillProgress() []TableProgress { return r.progress.all() }

// Metrics are the Runner's Prometheus metrics.
func (r *Runner) Metrics() *Metrics { return r.metrics }

// Stop asks for a soft stop: the reader stops after the transaction in
// progress, the stages drain, the last batch is written and confirmed, and
// Run returns nil.
func (r *Runner) Stop() { r.stopOnce.Do(func() { close(r.stop) }) }

// Ready is closed once replication has first started (for tests and the demo).
func (r *Runner) Ready() <-chan struct{} { return r.ready }

// Backfilled is closed once every bound table has been backfilled (or
// needs none), for tests and the demo.
func (r *Runner) Backfilled() <-chan struct{} { return r.backfilled }

// CommittedLSN is the end LSN of the last transaction Kafka acknowledged.
func (r *Runner) CommittedLSN() pglogrepl.LSN { return pglogrepl.LSN(r.committed.Load()) }

// Retry pacing of failed sessions.
const (
	retryFirst = 500 * time.Millisecond
	retryMax   = 30 * time.Second
	// retryHealthy is how long a session must have run for the next failure
	// to be retried at once again.
	retryHealthy = time.Minute
)

// Run captures until Stop (nil) or until ctx ends or a failure that a
// retry cannot mend (the error). Once streaming has started, a session that
// fails on a lost connection, a restarting server or broker, or a timeout
// is started anew from the last checkpoint, after a capped exponential
// backoff. A failure before streaming ever started is returned at once (a
// misconfigured or unreachable source is for the operator, or the
// supervisor that restarts pgkafka, to see), but for a slot still held by
// a predecessor, which is waited for. It may be called once.
func (r *Runner) Run(ctx context.Context) error {
	wait := retryFirst
	for attempt := 1; ; attempt++ {
		start := time.Now()
		r.metrics.sessions.Inc()
		err := r.session(ctx)
		if err != nil && !errors.Is(err, errRestart) {
			r.metrics.failures.Inc()
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errRestart) && ctx.Err() == nil:
			r.log.Info("restarting from the checkpoint to backfill the requested tables")
			attempt, wait = 0, retryFirst
			continue
		case ctx.Err() != nil:
			return fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		case errors.Is(err, schema.ErrNoBinary) && r.cfg.Source.Advanced.PgoutputBinary == pgsrc.BinaryAuto && !r.stopping():
			// A column added while binary streamed has a type pgkafka does
			// not decode in binary: retried, the next session decides
			// again, and streams text.
		case r.stopping(), !Retryable(err):
			return err
		case !r.started() && !errors.Is(err, pgsrc.ErrSlotActive):
			// Before streaming ever started, only a slot still held by a
			// predecessor (fenced, about to go) is worth waiting for.
			return err
		}
		if time.Since(start) > retryHealthy {
			attempt, wait = 1, retryFirst
		}
		r.log.Warn("capture failed; retrying from the last checkpoint", "err", err, "attempt", attempt, "in", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		case <-r.stop:
			t.Stop()
			return nil
		}
		wait = min(2*wait, retryMax)
	}
}

func (r *Runner) started() bool {
	select {
	case <-r.ready:
		return true
	default:
		return false
	}
}

func (r *Runner) stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// session runs the capture once: prerequisites, fencing, the checkpoint,
// then the stages until a soft stop (nil) or a failure.
func (r *Runner) session(ctx context.Context) error {
	cfg := &r.cfg
	catalog, err := pgsrc.OpenCatalog(ctx, &cfg.Source)
	if err != nil {
		return err
	}
	defer r.closeLogged("catalog connection", catalog.Close)

	tables, err := r.resolveTables(ctx, catalog)
	if err != nil {
		return err
	}
	refs := make([]pgsrc.TableRef, len(tables))
	bound := make(map[pgsrc.TableRef]*pgsrc.Table, len(tables))
	topics := make([]string, 0, len(tables))
	for i := range tables {
		t := &tables[i]
		refs[i] = t.Ref()
		bound[refs[i]] = t
		topics = append(topics, cfg.TopicFor(refs[i]))
		if len(t.PrimaryKey) == 0 && !(t.ReplicaIdentity == 'i' && len(t.IdentityIndex) > 0) {
			r.log.Warn("table has no primary key: its records get a null key and are spread round-robin", "table", refs[i].String())
		}
	}

	// Kafka first: fence any other instance of this name (which aborts its
	// open transaction), then read the checkpoint up to the end.
	kafkaLog := r.log.With("component", "kafka")
	opts, err := cfg.Kafka.producerOpts(kafkaLog)
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(append(opts,
		kgo.TransactionalID(cfg.Name),
		kgo.TransactionTimeout(cfg.Kafka.TransactionTimeout),
	)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()
	if _, _, err := client.ProducerID(ctx); err != nil {
		if isFenced(err) {
			return fmt.Errorf("%w: another pgkafka with name %q took over while this one started: %v", ErrFenced, cfg.Name, err)
		}
		return fmt.Errorf("kafka at %v: initializing the transactional producer %q: %w", cfg.Kafka.Brokers, cfg.Name, err)
	}
	adm := kadm.NewClient(client)
	if created, err := offsets.EnsureTopic(ctx, adm, cfg.Kafka.OffsetsTopic, cfg.Kafka.Topics.ReplicationFactor); err != nil {
		return fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
	} else if created {
		r.log.Info("offsets topic created", "topic", cfg.Kafka.OffsetsTopic)
	}
	if err := createTopics(ctx, adm, cfg.Kafka.Topics, topics, r.log); err != nil {
		return fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
	}
	clientOpts, err := cfg.Kafka.clientOpts(kafkaLog)
	if err != nil {
		return err
	}
	cp, err := offsets.Load(ctx, clientOpts, cfg.Kafka.OffsetsTopic, cfg.Name)
	if err != nil {
		return err
	}
	if err := r.checkSlot(ctx, catalog, cp); err != nil {
		return err
	}
	if err := pgsrc.Setup(ctx, &cfg.Source, refs, r.log); err != nil {
		return err
	}

	registry, err := schema.NewRegistry(cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	var start pglogrepl.LSN
	if cp != nil {
		start = cp.LSN
		storeMax(&r.committed, uint64(cp.LSN))
		r.log.Info("resuming from the checkpoint", "lsn", cp.LSN.String(), "partial", cp.Partial != nil)
	}
	binaryMode, err := r.pgoutputBinary(ctx, catalog, tables)
	if err != nil {
		return err
	}
	src, err := pgsrc.StartReader(ctx, &cfg.Source, start, pgsrc.ReaderOptions{Messages: cfg.Messages.On(), Binary: binaryMode}, r.log.With("stage", "reader"))
	if err != nil {
		return err
	}
	defer r.closeLogged("replication connection", src.Close)
	source := schema.Source{Version: Version, Connector: "postgresql", Name: cfg.Name, DB: cfg.Source.Database}
	var messages *messageTopic
	if src.Messages() {
		if err := createTopics(ctx, adm, cfg.Kafka.Topics, []string{cfg.MessageTopic()}, r.log); err != nil {
			return fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
		}
		if messages, err = newMessageTopic(ctx, cfg, registry, source, r.metrics); err != nil {
			return err
		}
	}
	var heart *pgsrc.Watermarks
	if cfg.Source.Advanced.HeartbeatInterval > 0 {
		if heart, err = pgsrc.OpenWatermarks(ctx, &cfg.Source); err != nil {
			return err
		}
		defer r.closeLogged("heartbeat connection", heart.Close)
	}
	// The checkpoints of this session name its tables' states; the tables
	// to backfill, and from where, come from the last one.
	base := cp.Clone()
	if base == nil {
		// The first checkpoint starts where the slot does.
		slot, err := catalog.Slot(ctx, cfg.Source.Advanced.SlotName)
		if err != nil {
			return err
		}
		base = &offsets.Checkpoint{LSN: slot.ConfirmedFlush}
	}
	var scanner *pgsrc.Scanner
	if r.needsBackfill(tables, base) {
		if scanner, err = pgsrc.OpenScanner(ctx, &cfg.Source); err != nil {
			return err
		}
		defer r.closeLogged("backfill connection", scanner.Close)
	}
	backfills, order, err := r.backfills(ctx, scanner, tables, base)
	if err != nil {
		return err
	}
	var bf *backfillStage
	workers := min(len(order), cfg.Source.Advanced.BackfillParallelism)
	plans := make(chan *chunkPlan, 2*max(1, workers))
	var awaited atomic.Int32
	gate := newWindowGate()
	if len(order) > 0 {
		marks, err := pgsrc.OpenWatermarks(ctx, &cfg.Source)
		if err != nil {
			return err
		}
		defer r.closeLogged("watermarks connection", marks.Close)
		scanners := []*pgsrc.Scanner{scanner}
		for len(scanners) < workers {
			sc, err := pgsrc.OpenScanner(ctx, &cfg.Source)
			if err != nil {
				return err
			}
			defer r.closeLogged("backfill connection", sc.Close)
			scanners = append(scanners, sc)
		}
		bf = &backfillStage{scanners: scanners, marks: marks, tables: order, chunkSize: cfg.Source.Advanced.BackfillChunkSize,
			plans: plans, awaited: &awaited, gate: gate, prog: r.progress, log: r.log.With("stage", "backfill")}
	} else {
		close(plans)
		r.log.Info("backfills finished")
		r.backfilledOnce.Do(func() { close(r.backfilled) })
	}
	marksRef, err := pgsrc.ParseTableRef(cfg.Source.Advanced.WatermarksTable)
	if err != nil {
		return fmt.Errorf("source.advanced.watermarksTable: %w", err)
	}
	r.readyOnce.Do(func() { close(r.ready) })

	// A soft stop first lets the backfill finish its chunk in flight, then
	// stops the reader after the transaction in progress.
	backfillSoft, backfillSoftCancel := context.WithCancel(ctx)
	defer backfillSoftCancel()
	soft, softCancel := context.WithCancel(ctx)
	defer softCancel()
	backfillDone := make(chan struct{})
	go func() {
		select {
		case <-r.stop:
			backfillSoftCancel()
			select {
			case <-backfillDone:
			case <-soft.Done():
			}
			softCancel()
		case <-soft.Done():
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	walCh := make(chan *walBatch, chanCap)
	changeCh := make(chan *changeBatch, chanCap)
	recordCh := make(chan *recordBatch, chanCap)
	reader := &readerStage{src: src, committed: &r.committed, awaited: &awaited, log: r.log.With("stage", "reader")}
	decoder := &decoderStage{dec: pgsrc.NewDecoder()}
	serializer := &serializerStage{
		cfg: cfg, catalog: catalog, registry: registry, resume: cp, metrics: r.metrics,
		source: source, messages: messages,
		log:   r.log.With("stage", "serializer"),
		bound: bound, tables: make(map[uint32]*tableCodec),
		backfills: backfills, plans: plans, pending: make(map[string]*chunkPlan),
		synthetic: make(map[pgsrc.TableRef]*tableCodec), marksRef: marksRef, gate: gate,
		toast: newToastReconciler(cfg, r.metrics, r.log.With("stage", "serializer")),
	}
	if binaryMode {
		serializer.keyText = &keyText{}
	}
	defer r.closeLogged("TOAST reconciler's connection", serializer.toast.close)
	producer := &producerStage{
		client: client, committed: &r.committed, cp: base,
		offsetsTopic: cfg.Kafka.OffsetsTopic, name: cfg.Name,
		window: cfg.Kafka.TransactionWindow, maxRecords: cfg.Kafka.MaxTransactionRecords,
		log: r.log.With("stage", "producer"), metrics: r.metrics,
	}
	g.Go(func() error { return stage("reader", reader.run(gctx, softOf(gctx, soft), walCh)) })
	g.Go(func() error { return stage("decoder", decoder.run(gctx, walCh, changeCh)) })
	g.Go(func() error { return stage("serializer", serializer.run(gctx, changeCh, recordCh)) })
	g.Go(func() error { return stage("producer", producer.run(gctx, recordCh)) })
	if bf != nil {
		g.Go(func() error {
			defer close(backfillDone)
			if err := bf.run(gctx, softOf(gctx, backfillSoft)); err != nil {
				return stage("backfill", err)
			}
			if bf.finished {
				r.backfilledOnce.Do(func() { close(r.backfilled) })
			}
			return nil
		})
	} else {
		close(backfillDone)
	}
	if heart != nil {
		g.Go(func() error {
			return stage("heartbeat", heartbeat(softOf(gctx, soft), heart, cfg.Source.Advanced.HeartbeatInterval))
		})
	}
	r.log.Info("capturing", "tables", len(refs), "slot", cfg.Source.Advanced.SlotName)
	if err := g.Wait(); err != nil {
		return err
	}
	// Soft stop: everything read is in Kafka; tell the slot.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	if err := reader.status(sctx); err != nil {
		return err
	}
	r.log.Info("stopped", "lsn", r.CommittedLSN().String())
	return nil
}

// backfills sets each bound table's state in base, from base's own record
// of it: a table new to the checkpoint is backfilled (or skipped, when
// listed in source.advanced.skip_backfills); one being backfilled goes on
// from its cursor. It returns the tables to backfill, in binding order.
func (r *Runner) backfills(ctx context.Context, scanner *pgsrc.Scanner, tables []pgsrc.Table, base *offsets.Checkpoint) (map[pgsrc.TableRef]*tableBackfill, []*tableBackfill, error) {
	skip := r.skipBackfills()
	prev := base.Tables
	base.Tables = make(map[string]offsets.TableState, len(tables))
	byRef := map[pgsrc.TableRef]*tableBackfill{}
	var order []*tableBackfill
	for i := range tables {
		t := &tables[i]
		name := t.Ref().String()
		st, known := prev[name]
		switch {
		case known && st.State != offsets.StateBackfilling:
			base.Tables[name] = st
			continue
		case !known && skip[name]:
			base.Tables[name] = offsets.TableState{State: offsets.StateSkipped}
			continue
		}
		if scanner == nil {
			return nil, nil, fmt.Errorf("table %s needs a backfill but no scanner is open", name) // programmer error
		}
		b := &tableBackfill{info: t}
		keyCols := t.PrimaryKey
		if len(keyCols) == 0 && t.ReplicaIdentity == 'i' {
			keyCols = t.IdentityIndex
		}
		if len(keyCols) > 0 {
			// The scanner's order leaves COLLATE "C" out where the key's
			// collation is C already, so chunk queries walk its index.
			o, err := scanner.KeyOrder(ctx, t, keyCols)
			if err != nil {
				return nil, nil, err
			}
			b.order = o
		}
		if err := b.parseCursor(st.Cursor); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", offsets.ErrUnreadable, err)
		}
		base.Tables[name] = b.state()
		byRef[t.Ref()] = b
		order = append(order, b)
	}
	return byRef, order, nil
}

// needsBackfill reports whether a bound table has a backfill to run.
func (r *Runner) needsBackfill(tables []pgsrc.Table, base *offsets.Checkpoint) bool {
	skip := r.skipBackfills()
	for i := range tables {
		name := tables[i].Ref().String()
		st, known := base.Tables[name]
		if known && st.State == offsets.StateBackfilling || !known && !skip[name] {
			return true
		}
	}
	return false
}

func (r *Runner) skipBackfills() map[string]bool {
	skip := map[string]bool{}
	for _, t := range r.cfg.Source.SkipBackfillTables() {
		skip[t] = true
	}
	return skip
}

// checkSlot refuses to resume from a checkpoint the slot cannot serve: a
// slot gone or invalidated has lost the WAL since, and a slot confirmed
// past the checkpoint has let changes go that Kafka never got.
func (r *Runner) checkSlot(ctx context.Context, catalog *pgsrc.Catalog, cp *offsets.Checkpoint) error {
	if cp == nil {
		return nil
	}
	cfg := &r.cfg
	slot, err := catalog.Slot(ctx, cfg.Source.Advanced.SlotName)
	if err != nil {
		return err
	}
	reset := fmt.Sprintf("to start over from the current state of the database, delete the checkpoint (produce a tombstone with key %q to topic %q) and the slot if it remains, then restart: a new slot is created", cfg.Name, cfg.Kafka.OffsetsTopic)
	switch {
	case !slot.Exists:
		return fmt.Errorf("%w: slot %q does not exist but the checkpoint in %q is at LSN %s: the changes since cannot be read again; %s",
			ErrSlotLost, slot.Name, cfg.Kafka.OffsetsTopic, cp.LSN, reset)
	case slot.Lost():
		return fmt.Errorf("%w: slot %q was invalidated by PostgreSQL (wal_status lost, see max_slot_wal_keep_size) after the checkpoint at LSN %s: the changes since are gone; %s",
			ErrSlotLost, slot.Name, cp.LSN, reset)
	case slot.ConfirmedFlush > cp.LSN:
		return fmt.Errorf("%w: slot %q is confirmed up to LSN %s but the checkpoint in %q is at LSN %s: another consumer of the slot, or a restored topic, let changes go that Kafka does not hold; %s",
			ErrSlotAhead, slot.Name, slot.ConfirmedFlush, cfg.Kafka.OffsetsTopic, cp.LSN, reset)
	}
	return nil
}

// heartbeat writes the watermarks table every interval until ctx ends.
func heartbeat(ctx context.Context, w *pgsrc.Watermarks, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if err := w.Write(ctx, "heartbeat "+now.UTC().Format(time.RFC3339)); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

// softOf is the soft-stop context of the reader: it ends on Stop or when
// the stage group fails.
func softOf(gctx, soft context.Context) context.Context {
	c, cancel := context.WithCancel(gctx)
	context.AfterFunc(soft, cancel)
	return c
}

func stage(name string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// resolveTables describes the bound tables; without bindings, the
// publication's tables, or every readable table when it does not exist.
func (r *Runner) resolveTables(ctx context.Context, catalog *pgsrc.Catalog) ([]pgsrc.Table, error) {
	cfg := &r.cfg
	refs := cfg.Tables()
	watermarks, err := pgsrc.ParseTableRef(cfg.Source.Advanced.WatermarksTable)
	if err != nil {
		return nil, fmt.Errorf("source.advanced.watermarksTable: %w", err)
	}
	if len(refs) == 0 {
		pubTables, exists, err := catalog.PublicationTables(ctx, cfg.Source.Advanced.PublicationName)
		if err != nil {
			return nil, err
		}
		if exists {
			refs = slices.DeleteFunc(pubTables, func(t pgsrc.TableRef) bool { return t == watermarks })
			if len(refs) == 0 {
				return nil, fmt.Errorf("bindings: none configured and publication %q holds no table: list tables under bindings (see `pgkafka discover`)", cfg.Source.Advanced.PublicationName)
			}
		}
	}
	tables, err := catalog.Discover(ctx, refs)
	if err != nil {
		return nil, err
	}
	tables = slices.DeleteFunc(tables, func(t pgsrc.Table) bool { return t.Ref() == watermarks })
	if len(tables) == 0 {
		return nil, errors.New("bindings: no table to capture: none is configured and the user can read none")
	}
	var unkeyed []error
	for i := range tables {
		if err := tables[i].CheckPublished(cfg.Source.Advanced.PublicationName); err != nil {
			unkeyed = append(unkeyed, err)
		}
	}
	if len(unkeyed) > 0 {
		return nil, errors.Join(unkeyed...)
	}
	return tables, nil
}

// closeLogged closes a connection after the run; a failure there cannot
// change the run's outcome, so it is logged, not returned.
func (r *Runner) closeLogged(what string, close func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := close(ctx); err != nil {
		r.log.Warn("closing the "+what, "err", err)
	}
}
