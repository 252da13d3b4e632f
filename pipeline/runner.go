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

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Version is pgkafka's version, written in source.version.
const Version = "0.1.0"

// closeTimeout bounds the clean-up work done after the stages end.
const closeTimeout = 10 * time.Second

// Runner runs one capture: prerequisites, then the stages until stopped.
type Runner struct {
	cfg Config
	log *slog.Logger

	stopOnce sync.Once
	stop     chan struct{}

	committed atomic.Uint64
	ready     chan struct{}
}

// NewRunner validates cfg (defaults already applied) and returns a Runner.
func NewRunner(cfg Config, log *slog.Logger) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: log, stop: make(chan struct{}), ready: make(chan struct{})}, nil
}

// Stop asks for a soft stop: the reader stops after the transaction in
// progress, the stages drain, the last batch is written and confirmed, and
// Run returns nil.
func (r *Runner) Stop() { r.stopOnce.Do(func() { close(r.stop) }) }

// Ready is closed once replication has started (for tests and the demo).
func (r *Runner) Ready() <-chan struct{} { return r.ready }

// CommittedLSN is the end LSN of the last transaction Kafka acknowledged.
func (r *Runner) CommittedLSN() pglogrepl.LSN { return pglogrepl.LSN(r.committed.Load()) }

// Run sets up the prerequisites and streams until Stop (nil) or until ctx
// ends or a stage fails (the error, wrapped with its stage). It may be
// called once.
func (r *Runner) Run(ctx context.Context) error {
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
	if err := pgsrc.Setup(ctx, &cfg.Source, refs, r.log); err != nil {
		return err
	}

	opts, err := cfg.Kafka.producerOpts(r.log.With("component", "kafka"))
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()
	if err := createTopics(ctx, kadm.NewClient(client), cfg.Kafka.Topics, topics, r.log); err != nil {
		return fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
	}
	registry, err := schema.NewRegistry(cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	env, err := schema.ParseEnvelope(cfg.Format.Envelope)
	if err != nil {
		return fmt.Errorf("format.envelope: %w", err)
	}

	src, err := pgsrc.StartReader(ctx, &cfg.Source, 0, r.log.With("stage", "reader"))
	if err != nil {
		return err
	}
	defer r.closeLogged("replication connection", src.Close)
	close(r.ready)

	soft, softCancel := context.WithCancel(ctx)
	defer softCancel()
	go func() {
		select {
		case <-r.stop:
			softCancel()
		case <-soft.Done():
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	walCh := make(chan *walBatch, chanCap)
	changeCh := make(chan *changeBatch, chanCap)
	recordCh := make(chan *recordBatch, chanCap)
	reader := &readerStage{src: src, committed: &r.committed, log: r.log.With("stage", "reader")}
	decoder := &decoderStage{dec: pgsrc.NewDecoder()}
	serializer := &serializerStage{
		cfg: cfg, catalog: catalog, registry: registry, envelope: env,
		source: schema.Source{Version: Version, Connector: "postgresql", Name: cfg.Name, DB: cfg.Source.Database},
		log:    r.log.With("stage", "serializer"),
		bound:  bound, tables: make(map[uint32]*tableCodec),
	}
	producer := &producerStage{client: client, committed: &r.committed, log: r.log.With("stage", "producer")}
	g.Go(func() error { return stage("reader", reader.run(gctx, softOf(gctx, soft), walCh)) })
	g.Go(func() error { return stage("decoder", decoder.run(gctx, walCh, changeCh)) })
	g.Go(func() error { return stage("serializer", serializer.run(gctx, changeCh, recordCh)) })
	g.Go(func() error { return stage("producer", producer.run(gctx, recordCh)) })
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
