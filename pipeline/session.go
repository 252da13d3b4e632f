package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// closeTimeout bounds the clean-up work done after the stages end.
const closeTimeout = 10 * time.Second

// session is one attempt of Runner.Run: prerequisites, fencing, the
// checkpoint, then the stages until a soft stop or a failure. Its phases
// (run) fill its fields in order; each field is set by one phase and only
// read after it.
type session struct {
	r   *Runner
	cfg *Config
	log *slog.Logger

	// closers close what the session opened, last opened first (close).
	closers []closer

	// openSource: the catalog connection and the bound tables.
	catalog *pgsrc.Catalog
	tables  []pgsrc.Table
	refs    []pgsrc.TableRef // the tables' names, in binding order
	bound   map[pgsrc.TableRef]*pgsrc.Table
	missing []*pgsrc.TableNotFoundError // bound tables the catalog lacks

	// settleDropped (dropped.go), once the checkpoint is read: the bound
	// tables dropped whose changes the stream may still carry, and the
	// checkpoint states of bound tables the catalog lacks, by name.
	dropped []*droppedTable
	carried map[string]offsets.TableState

	// openKafka: the fenced transactional client and the checkpoint.
	client *kgo.Client
	admin  *kadm.Client
	// resumed is the checkpoint loaded from Kafka, nil if there is none.
	resumed *offsets.Checkpoint

	// prepareSource: the replication stream and what goes with it.
	registry *schema.Registry
	binary   bool // the stream is binary pgoutput
	src      *pgsrc.Reader
	source   schema.Source
	messages *messageTopic // nil when messages are not captured
	txm      *txMeta       // nil without format.transactionMetadata
	// heartbeats writes the watermarks table every
	// source.advanced.heartbeatInterval; nil when that is 0s.
	heartbeats *pgsrc.Watermarks
	// slotWatch reads the slot's state into metrics, on its own connection.
	slotWatch *slotWatch
	// slotRecreated: the slot was lost and is made again, every table
	// backfilled again (source.advanced.onSlotLost: rebackfill).
	slotRecreated bool

	// planBackfills: the starting checkpoint and the backfills' resources.
	// start is the checkpoint this session starts from, with each bound
	// table's state: a copy of resumed or, without one, where the slot
	// starts.
	start      *offsets.Checkpoint
	backfills  map[pgsrc.TableRef]*tableBackfill
	order      []*tableBackfill  // the tables to backfill, in binding order
	scanners   []*pgsrc.Scanner  // one per backfill worker; none without backfills
	watermarks *pgsrc.Watermarks // the backfill's watermark writes; nil without backfills
	purger     *purger           // removes keys after a re-backfill for a lost slot; nil without one

	// wire: the channels between the stages, and the stages.
	walCh      chan *walBatch
	changeCh   chan *changeBatch
	recordCh   chan *recordBatch
	reader     *readerStage
	decoder    *decoderStage
	serializer *serializerStage
	producer   *producerStage
	backfill   *backfillStage // nil without backfills
}

// closer is a resource of the session: what it is, for the log, and how
// to close it.
type closer struct {
	what  string
	close func(context.Context) error
}

func newSession(r *Runner) *session {
	return &session{r: r, cfg: &r.cfg, log: r.log}
}

// run runs the session's phases, then its stages until a soft stop (nil)
// or a failure; whatever the outcome, it closes what it opened.
func (s *session) run(ctx context.Context) error {
	defer s.close()
	if err := s.openSource(ctx); err != nil {
		return err
	}
	if err := s.openKafka(ctx); err != nil {
		return err
	}
	if err := s.settleDropped(ctx); err != nil {
		return err
	}
	if err := s.prepareSource(ctx); err != nil {
		return err
	}
	if err := s.planBackfills(ctx); err != nil {
		return err
	}
	if len(s.order) == 0 && s.initialOnly() {
		// Nothing read from the stream yet, nothing to confirm: the slot
		// keeps the changes since the checkpoint for a later run.
		s.log.Info("no table to backfill; backfillMode initial_only: stopping", "lsn", s.start.LSN.String())
		return nil
	}
	s.wire()
	return s.runStages(ctx)
}

// onClose adds a resource for close to close.
func (s *session) onClose(what string, close func(context.Context) error) {
	s.closers = append(s.closers, closer{what: what, close: close})
}

// close closes the session's resources, last opened first. A failure
// there cannot change the session's outcome, so it is logged, not returned.
func (s *session) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		c := s.closers[i]
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		if err := c.close(ctx); err != nil {
			s.log.Warn("closing the "+c.what, "err", err)
		}
		cancel()
	}
	s.closers = nil
}

// openSource opens the catalog connection and describes the bound tables,
// which must not share a topic.
func (s *session) openSource(ctx context.Context) error {
	catalog, err := pgsrc.OpenCatalog(ctx, &s.cfg.Source)
	if err != nil {
		return err
	}
	s.catalog = catalog
	s.onClose("catalog connection", catalog.Close)

	if s.tables, err = s.resolveTables(ctx); err != nil {
		return err
	}
	if err := s.cfg.checkKeys(s.tables); err != nil {
		return err
	}
	if err := s.cfg.checkColumns(s.tables); err != nil {
		return err
	}
	if err := s.cfg.checkOutboxes(s.tables); err != nil {
		return err
	}
	s.refs = make([]pgsrc.TableRef, len(s.tables))
	s.bound = make(map[pgsrc.TableRef]*pgsrc.Table, len(s.tables))
	for i := range s.tables {
		t := &s.tables[i]
		s.refs[i] = t.Ref()
		s.bound[s.refs[i]] = t
		if len(t.KeyColumns) == 0 {
			s.log.Warn("table has no primary key: its records get a null key and are spread round-robin", "table", s.refs[i].String())
		}
	}
	// Before Kafka is touched: the broker would refuse the topics' creation
	// with a message that names neither table.
	return s.cfg.checkTopics(s.refs)
}

// openKafka comes before the replication stream: it fences any other
// instance of this name (which aborts its open transaction), creates the
// offsets topic and the tables' topics, then reads the checkpoint up to
// the end.
func (s *session) openKafka(ctx context.Context) error {
	cfg := s.cfg
	kafkaLog := s.log.With("component", "kafka")
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
	s.client = client
	s.onClose("Kafka client", func(context.Context) error { client.Close(); return nil })
	if _, _, err := client.ProducerID(ctx); err != nil {
		if isFenced(err) {
			return s.r.refused(ctx, err)
		}
		return fmt.Errorf("kafka at %v: initializing the transactional producer %q: %w", cfg.Kafka.Brokers, cfg.Name, err)
	}
	s.admin = kadm.NewClient(client)
	if created, err := offsets.EnsureTopic(ctx, s.admin, cfg.Kafka.OffsetsTopic, cfg.Kafka.Topics.ReplicationFactor); err != nil {
		return fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
	} else if created {
		s.log.Info("offsets topic created", "topic", cfg.Kafka.OffsetsTopic)
	}
	topics := make([]string, 0, len(s.refs)+1)
	for _, ref := range s.refs {
		if cfg.outboxOf(ref) != nil {
			continue // its events' topics are created on first sight (outbox.go)
		}
		if t := cfg.TopicFor(ref); !slices.Contains(topics, t) { // a route's tables share one
			topics = append(topics, t)
		}
	}
	if cfg.Kafka.OversizedRecords == OversizedDLQ {
		topics = append(topics, cfg.DeadLetterTopic())
	}
	if cfg.Format.TransactionMetadata {
		topics = append(topics, cfg.TransactionTopic())
	}
	if err := createTopics(ctx, s.admin, cfg.Kafka.Topics, topics, s.log); err != nil {
		return fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
	}
	clientOpts, err := cfg.Kafka.clientOpts(kafkaLog)
	if err != nil {
		return err
	}
	resumed, err := offsets.Load(ctx, clientOpts, cfg.Kafka.OffsetsTopic, cfg.Name)
	if err != nil {
		return err
	}
	s.resumed = resumed
	return nil
}

// prepareSource checks that the slot can serve the checkpoint, sets up the
// publication and the slot, and starts the replication stream from the
// checkpoint; then it registers the topic of logical decoding messages,
// when the stream carries them, and opens the heartbeat connection.
func (s *session) prepareSource(ctx context.Context) error {
	cfg := s.cfg
	if err := s.checkSlot(ctx); err != nil {
		return err
	}
	if err := pgsrc.Setup(ctx, &cfg.Source, s.refs, s.log); err != nil {
		return err
	}
	if s.slotRecreated {
		if err := s.recreateSlot(ctx); err != nil {
			return err
		}
	}
	registry, err := schema.NewRegistry(cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	s.registry = registry
	var from pglogrepl.LSN
	if s.resumed != nil {
		from = s.resumed.LSN
		storeMax(&s.r.committed, uint64(s.resumed.LSN))
		s.log.Info("resuming from the checkpoint", "lsn", s.resumed.LSN.String(), "partial", s.resumed.Partial != nil)
	}
	if s.binary, err = s.r.pgoutputBinary(ctx, s.catalog, s.tables); err != nil {
		return err
	}
	src, err := pgsrc.StartReader(ctx, &cfg.Source, from, pgsrc.ReaderOptions{Messages: cfg.Messages.On(), Binary: s.binary}, s.log.With("stage", "reader"))
	if err != nil {
		return err
	}
	s.src = src
	s.onClose("replication connection", src.Close)
	s.source = schema.Source{Version: Version, Connector: "postgresql", Name: cfg.Name, DB: cfg.Source.Database}
	if s.txm, err = newTxMeta(ctx, cfg, registry); err != nil {
		return err
	}
	if src.Messages() {
		if err := createTopics(ctx, s.admin, cfg.Kafka.Topics, []string{cfg.MessageTopic()}, s.log); err != nil {
			return fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
		}
		if s.messages, err = newMessageTopic(ctx, cfg, registry, s.source, s.r.metrics); err != nil {
			return err
		}
	}
	watchConn, err := pgsrc.OpenCatalog(ctx, &cfg.Source)
	if err != nil {
		return err
	}
	s.onClose("slot watch connection", watchConn.Close)
	s.slotWatch = &slotWatch{catalog: watchConn, slot: cfg.Source.Advanced.SlotName, maxLag: cfg.Source.Advanced.MaxSlotLagBytes,
		metrics: s.r.metrics, log: s.log.With("stage", "slot")}
	every := cfg.Source.Advanced.Heartbeat()
	if every == 0 {
		s.log.Info("heartbeats off (source.advanced.heartbeatInterval: 0s)")
		return nil
	}
	heartbeats, err := pgsrc.OpenWatermarks(ctx, &cfg.Source)
	if err != nil {
		return err
	}
	s.heartbeats = heartbeats
	s.onClose("heartbeat connection", heartbeats.Close)
	s.log.Info("heartbeats on", "every", every.String())
	return nil
}

// planBackfills makes the checkpoint the session starts from, with each
// bound table's state, and opens what the backfills need: a scanner per
// worker (up to source.advanced.backfill_parallelism) and the watermarks
// connection.
func (s *session) planBackfills(ctx context.Context) error {
	cfg := s.cfg
	// The checkpoints of this session name its tables' states; the tables
	// to backfill, and from where, come from the last one.
	s.start = s.resumed.Clone()
	if s.start == nil {
		// The first checkpoint starts where the slot does.
		slot, err := s.catalog.Slot(ctx, cfg.Source.Advanced.SlotName)
		if err != nil {
			return err
		}
		s.start = &offsets.Checkpoint{LSN: slot.ConfirmedFlush}
	}
	var scanner *pgsrc.Scanner
	if s.needsBackfill() {
		sc, err := pgsrc.OpenScanner(ctx, &cfg.Source)
		if err != nil {
			return err
		}
		s.onClose("backfill connection", sc.Close)
		scanner = sc
	}
	var err error
	if s.backfills, s.order, err = s.tableStates(ctx, scanner); err != nil {
		return err
	}
	if err := s.readPurgeSets(ctx); err != nil {
		return err
	}
	if len(s.order) == 0 {
		s.log.Info("backfills finished")
		s.r.backfilledOnce.Do(func() { close(s.r.backfilled) })
		return nil
	}
	watermarks, err := pgsrc.OpenWatermarks(ctx, &cfg.Source)
	if err != nil {
		return err
	}
	s.watermarks = watermarks
	s.onClose("watermarks connection", watermarks.Close)
	workers := min(len(s.order), cfg.Source.Advanced.BackfillParallelism)
	s.scanners = []*pgsrc.Scanner{scanner}
	for len(s.scanners) < workers {
		sc, err := pgsrc.OpenScanner(ctx, &cfg.Source)
		if err != nil {
			return err
		}
		s.onClose("backfill connection", sc.Close)
		s.scanners = append(s.scanners, sc)
	}
	return nil
}

// wire makes the channels between the stages and the stages themselves.
func (s *session) wire() {
	cfg, r := s.cfg, s.r
	// Two plans per backfill worker; closed at once without backfills.
	plans := make(chan *chunkPlan, 2*max(1, len(s.scanners)))
	var lowMarksAwaited atomic.Int32
	gate := newWindowGate()
	limit := newOversize(cfg, r.metrics, r.log.With("stage", "oversize"))
	if len(s.order) > 0 {
		jobs := make([]backfillJob, len(s.order))
		for i, b := range s.order {
			jobs[i] = b.job()
		}
		s.backfill = &backfillStage{cfg: cfg, scanners: s.scanners, watermarks: s.watermarks, jobs: jobs, chunkSize: cfg.Source.Advanced.BackfillChunkSize,
			plans: plans, lowMarksAwaited: &lowMarksAwaited, gate: gate, prog: r.progress, limit: limit, log: r.log.With("stage", "backfill")}
	} else {
		close(plans)
	}

	s.walCh = make(chan *walBatch, chanCap)
	s.changeCh = make(chan *changeBatch, chanCap)
	s.recordCh = make(chan *recordBatch, chanCap)
	s.reader = &readerStage{src: s.src, committed: &r.committed, lowMarksAwaited: &lowMarksAwaited, log: r.log.With("stage", "reader")}
	s.decoder = &decoderStage{dec: pgsrc.NewDecoder()}
	log := r.log.With("stage", "serializer")
	toast := newToastReconciler(cfg, r.metrics, log)
	s.onClose("TOAST reconciler's connection", toast.close)
	s.serializer = &serializerStage{
		codecs:   newCodecs(cfg, s.catalog, s.registry, s.source, s.bound, toast, r.metrics, log),
		dblog:    newDBLog(cfg.Source.Advanced.SlotName, s.backfills, plans, gate, cfg.Kafka.TransactionWindow, toast, log),
		toast:    toast,
		messages: s.messages,
		outbox:   newOutboxRouter(cfg, s.admin, limit, log),
		resumed:  resumePoint{s.resumed},
		log:      log,
		rows:     rowEncoder{limit: limit, tombstones: cfg.Format.TombstonesOn(), txm: s.txm},
	}
	s.serializer.dblog.purger, s.serializer.dblog.tombstones = s.purger, cfg.Format.TombstonesOn()
	s.serializer.codecs.addDropped(s.dropped)
	if s.binary {
		s.serializer.keyText = &keyText{}
	}
	s.producer = &producerStage{
		client: s.client, committed: &r.committed, lastCommitted: s.start,
		offsetsTopic: cfg.Kafka.OffsetsTopic, name: cfg.Name,
		window: cfg.Kafka.TransactionWindow, maxRecords: cfg.Kafka.MaxTransactionRecords,
		log: r.log.With("stage", "producer"), metrics: r.metrics, refused: r.refused,
	}
}

// runStages runs the stages, one goroutine each, under one errgroup until
// a soft stop (nil) or the first failure, which cancels the others. After
// a soft stop, everything read is in Kafka: it tells the slot.
func (s *session) runStages(ctx context.Context) error {
	r := s.r
	r.readyOnce.Do(func() { close(r.ready) })

	// A soft stop first lets the backfill finish its chunk in flight, then
	// stops the reader after the transaction in progress.
	backfillSoft, backfillSoftCancel := context.WithCancel(ctx)
	defer backfillSoftCancel()
	soft, softCancel := context.WithCancel(ctx)
	defer softCancel()
	backfillDone := make(chan struct{})
	// finished is closed when the backfills are done and
	// source.advanced.backfillMode is initial_only: a soft stop.
	finished := make(chan struct{})
	go func() {
		select {
		case <-r.stop:
			backfillSoftCancel()
			select {
			case <-backfillDone:
			case <-soft.Done():
			}
			softCancel()
		case <-finished:
			// Every chunk is emitted (the backfill stage waited for the
			// last high watermark), and no window is open: the reader
			// stops after the transaction in progress, the producer
			// commits what is left, and the slot is confirmed there.
			select {
			case <-backfillDone:
			case <-soft.Done():
			}
			softCancel()
		case <-soft.Done():
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return stage("reader", s.reader.run(gctx, softOf(gctx, soft), s.walCh)) })
	g.Go(func() error { return stage("decoder", s.decoder.run(gctx, s.walCh, s.changeCh)) })
	g.Go(func() error { return stage("serializer", s.serializer.run(gctx, s.changeCh, s.recordCh)) })
	g.Go(func() error { return stage("producer", s.producer.run(gctx, s.recordCh)) })
	if bf := s.backfill; bf != nil {
		g.Go(func() error {
			defer close(backfillDone)
			if err := bf.run(gctx, softOf(gctx, backfillSoft)); err != nil {
				return stage("backfill", err)
			}
			if bf.finished {
				r.backfilledOnce.Do(func() { close(r.backfilled) })
				if s.initialOnly() {
					s.log.Info("backfills finished; backfillMode initial_only: stopping")
					close(finished)
				}
			}
			return nil
		})
	} else {
		close(backfillDone)
	}
	g.Go(func() error { return stage("slot watch", s.slotWatch.run(softOf(gctx, soft))) })
	g.Go(func() error { return stage("lease watch", watchLease(softOf(gctx, soft), r.lease)) })
	if s.heartbeats != nil {
		g.Go(func() error {
			return stage("heartbeat", heartbeat(softOf(gctx, soft), s.heartbeats, s.cfg.Source.Advanced.Heartbeat()))
		})
	}
	s.log.Info("capturing", "tables", len(s.refs), "slot", s.cfg.Source.Advanced.SlotName)
	if err := g.Wait(); err != nil {
		return err
	}
	// Soft stop: everything read is in Kafka; tell the slot.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	if err := s.reader.status(sctx); err != nil {
		return err
	}
	s.log.Info("stopped", "lsn", r.CommittedLSN().String())
	return nil
}

// resolveTables describes the bound tables; without bindings, the
// publication's tables, or every readable table when it does not exist.
func (s *session) resolveTables(ctx context.Context) ([]pgsrc.Table, error) {
	cfg := s.cfg
	refs := cfg.Tables()
	watermarks := cfg.Source.Watermarks()
	if len(refs) == 0 {
		pubTables, exists, err := s.catalog.PublicationTables(ctx, cfg.Source.Advanced.PublicationName)
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
	// A bound table missing may be a dropped one: settleDropped decides
	// once the checkpoint is read.
	tables, missing, err := s.catalog.DiscoverPresent(ctx, refs)
	if err != nil {
		return nil, err
	}
	s.missing = missing
	tables = slices.DeleteFunc(tables, func(t pgsrc.Table) bool { return t.Ref() == watermarks })
	if len(tables) == 0 && len(missing) == 0 {
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

// checkSlot refuses to resume from a checkpoint the slot cannot serve: a
// slot gone or invalidated has lost the WAL since, and a slot confirmed
// past the checkpoint has let changes go that Kafka never got.
func (s *session) checkSlot(ctx context.Context) error {
	resumed := s.resumed
	if resumed == nil {
		return nil
	}
	cfg := s.cfg
	slot, err := s.catalog.Slot(ctx, cfg.Source.Advanced.SlotName)
	if err != nil {
		return err
	}
	rebackfill := cfg.Source.Advanced.OnSlotLost == pgsrc.SlotLostRebackfill
	switch {
	case resumed.SlotLost != nil && resumed.SlotLost.Pending:
		return s.rebackfillLostSlot(ctx, slot, "a re-backfill after a lost slot stopped before the new slot was made")
	case rebackfill && !slot.Exists:
		return s.rebackfillLostSlot(ctx, slot, "the slot does not exist")
	case rebackfill && slot.Lost():
		return s.rebackfillLostSlot(ctx, slot, "the slot was invalidated by PostgreSQL (wal_status lost)")
	}
	reset := fmt.Sprintf("to start over from the current state of the database, delete the checkpoint (produce a tombstone with key %q to topic %q) and the slot if it remains, then restart: a new slot is created; or set source.advanced.onSlotLost: rebackfill to have pgkafka make the slot again, backfill every table and remove the keys of rows deleted since", cfg.Name, cfg.Kafka.OffsetsTopic)
	switch {
	case !slot.Exists:
		return fmt.Errorf("%w: slot %q does not exist but the checkpoint in %q is at LSN %s: the changes since cannot be read again; %s",
			ErrSlotLost, slot.Name, cfg.Kafka.OffsetsTopic, resumed.LSN, reset)
	case slot.Lost():
		return fmt.Errorf("%w: slot %q was invalidated by PostgreSQL (wal_status lost, see max_slot_wal_keep_size) after the checkpoint at LSN %s: the changes since are gone; %s",
			ErrSlotLost, slot.Name, resumed.LSN, reset)
	case slot.ConfirmedFlush > resumed.LSN:
		return fmt.Errorf("%w: slot %q is confirmed up to LSN %s but the checkpoint in %q is at LSN %s: another consumer of the slot, or a restored topic, let changes go that Kafka does not hold; %s",
			ErrSlotAhead, slot.Name, slot.ConfirmedFlush, cfg.Kafka.OffsetsTopic, resumed.LSN, reset)
	}
	return nil
}

// tableStates sets each bound table's state in s.start, from s.start's
// own record of it: a table new to the checkpoint is backfilled (or
// skipped, when listed in source.advanced.skip_backfills); one being
// backfilled goes on from its cursor. It returns the tables to backfill,
// by name and in binding order.
func (s *session) tableStates(ctx context.Context, scanner *pgsrc.Scanner) (map[pgsrc.TableRef]*tableBackfill, []*tableBackfill, error) {
	skip := s.skipBackfills()
	prev := s.start.Tables
	s.start.Tables = make(map[string]offsets.TableState, len(s.tables))
	byRef := map[pgsrc.TableRef]*tableBackfill{}
	var order []*tableBackfill
	for i := range s.tables {
		t := &s.tables[i]
		name := t.Ref().String()
		st, known := prev[name]
		switch {
		case s.cfg.outboxOf(t.Ref()) != nil && (!known || st.State == offsets.StateBackfilling):
			if known {
				s.log.Warn("backfill of an outbox table not run: its rows there are past events, not read again", "table", name)
			}
			s.start.Tables[name] = offsets.TableState{State: offsets.StateSkipped, OID: t.OID}
			continue
		case known && st.State != offsets.StateBackfilling:
			st.OID = t.OID
			s.start.Tables[name] = st
			continue
		case !known && (skip[name] || s.cfg.Source.Advanced.BackfillMode == pgsrc.BackfillNever):
			s.start.Tables[name] = offsets.TableState{State: offsets.StateSkipped, OID: t.OID}
			continue
		}
		if scanner == nil {
			return nil, nil, fmt.Errorf("table %s needs a backfill but no scanner is open", name) // programmer error
		}
		b := &tableBackfill{info: t}
		if st.Where != "" {
			// A filtered backfill (pgkafka backfill --where): its reads
			// see the rows the condition passes. A condition PostgreSQL
			// no longer takes (a column dropped since) ends it.
			if err := scanner.CheckWhere(ctx, t.Ref(), st.Where); err != nil {
				s.log.Error("filtered backfill abandoned: its condition fails; request it again (pgkafka backfill --where)", "table", name, "where", st.Where, "err", err)
				s.start.Tables[name] = offsets.TableState{State: offsets.StateStreaming, OID: t.OID}
				continue
			}
			info := *t
			info.BackfillWhere = st.Where
			b.info, b.where = &info, st.Where
		}
		if len(t.KeyColumns) > 0 {
			// The scanner's order leaves COLLATE "C" out where the key's
			// collation is C already, so chunk queries walk its index.
			o, err := scanner.KeyOrder(ctx, b.info, t.KeyColumns)
			if err != nil {
				return nil, nil, err
			}
			b.order = o
		}
		if st.Purge && b.purgeable() {
			// A backfill after a lost slot starts over: the keys read
			// behind its cursor are not known here (slotlost.go).
			b.purgeMark = true
		} else if err := b.parseCursor(st.Cursor); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", offsets.ErrUnreadable, err)
		}
		s.start.Tables[name] = b.state()
		byRef[t.Ref()] = b
		order = append(order, b)
	}
	for name, st := range s.carried {
		s.start.Tables[name] = st
	}
	return byRef, order, nil
}

// needsBackfill reports whether a bound table has a backfill to run,
// according to s.start.
func (s *session) needsBackfill() bool {
	skip := s.skipBackfills()
	for i := range s.tables {
		name := s.tables[i].Ref().String()
		st, known := s.start.Tables[name]
		if known && st.State == offsets.StateBackfilling || !known && !skip[name] && s.cfg.Source.Advanced.BackfillMode != pgsrc.BackfillNever {
			return true
		}
	}
	return false
}

// initialOnly reports whether the capture stops once the backfills are
// done (source.advanced.backfillMode: initial_only).
func (s *session) initialOnly() bool {
	return s.cfg.Source.Advanced.BackfillMode == pgsrc.BackfillInitialOnly
}

func (s *session) skipBackfills() map[string]bool {
	skip := map[string]bool{}
	for _, t := range s.cfg.Source.SkipBackfillTables() {
		skip[t] = true
	}
	for _, t := range s.cfg.outboxTables() {
		skip[t.String()] = true // an outbox's rows there are past events (tableStates)
	}
	return skip
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

// softOf is the soft-stop context of a stage: it ends on soft (Stop) or
// when the stage group fails.
func softOf(gctx, soft context.Context) context.Context {
	c, cancel := context.WithCancel(gctx)
	context.AfterFunc(soft, cancel)
	return c
}

// stage names the stage a failure comes from.
func stage(name string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
