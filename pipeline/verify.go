package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// VerifyOptions are the choices of `pgkafka verify`.
type VerifyOptions struct {
	// Tables to verify, as "<schema>.<table>"; none: every bound table
	// (or, without bindings, every table of the checkpoint).
	Tables []string
	// Show is how many keys of each kind a report lists (default 10).
	Show int
	// CatchUp bounds the wait, in each re-check, for the capture to have
	// written every change the table reads could see (default 1 minute).
	CatchUp time.Duration
	// MaxRounds bounds the re-checks of the keys found different
	// (default 4).
	MaxRounds int
	// Progress, when set, is called as a table's rows are read: done of
	// about total (pg_class.reltuples, -1 unknown).
	Progress func(table string, done, total int64)
}

// VerifyUsageError is a table verify refuses to compare: exit 2.
type VerifyUsageError struct{ Err error }

func (e *VerifyUsageError) Error() string { return e.Err.Error() }
func (e *VerifyUsageError) Unwrap() error { return e.Err }

// VerifyReport is the comparison of one table with its topic.
type VerifyReport struct {
	Table, Topic string
	// Rows is the table rows read; TopicKeys the keys the topic's
	// compacted state holds.
	Rows, TopicKeys int64
	// Missing are keys of the table the topic lacks, Extra keys of the
	// topic the table lacks, Differ keys whose values differ: the first
	// VerifyOptions.Show of each, with the counts.
	Missing, Extra            []string
	Differ                    []KeyDiff
	NMissing, NExtra, NDiffer int
	// Unsettled counts keys that changed during each re-check, which
	// verify could not compare (not counted as differences).
	Unsettled int
	// Rounds is how many times the keys found different were checked
	// again.
	Rounds int
	// Notes say what limits the comparison (a capture not running, one
	// that did not catch up in time).
	Notes []string

	// repair is the request that repairs the topic (Repair), when asked
	// for and the table differs.
	repair *repairPlan
}

// Equal reports whether the table and its topic hold the same rows.
func (r *VerifyReport) Equal() bool { return r.NMissing+r.NExtra+r.NDiffer == 0 }

// KeyDiff is a key whose row and record differ, in the named columns.
type KeyDiff struct {
	Key     string
	Columns []string
}

// Verify compares each table with the compacted state of its topic (the
// latest record of each key, a delete or tombstone removing it), as a
// read_committed consumer sees it, and writes nothing: not to Kafka, not
// to the registry, not to PostgreSQL. README, "Verify", gives the
// consistency argument. Its errors never hold a password of cfg.
func Verify(ctx context.Context, cfg Config, opts VerifyOptions, log *slog.Logger) ([]VerifyReport, error) {
	reps, err := verify(ctx, cfg, opts, 0, log)
	return reps, cfg.Redactor().Error(cfg.Kafka.explainAuth(err))
}

// verify is Verify; with repairKeys > 0, it also plans the repair of each
// table found different (VerifyReport.repair), naming at most repairKeys
// keys (repair.go).
func verify(ctx context.Context, cfg Config, opts VerifyOptions, repairKeys int, log *slog.Logger) ([]VerifyReport, error) {
	if opts.Show <= 0 {
		opts.Show = 10
	}
	if opts.CatchUp <= 0 {
		opts.CatchUp = time.Minute
	}
	if opts.MaxRounds <= 0 {
		opts.MaxRounds = 4
	}
	kopts, err := cfg.Kafka.clientOpts(discardLogger())
	if err != nil {
		return nil, err
	}
	catalog, err := pgsrc.OpenCatalog(ctx, &cfg.Source)
	if err != nil {
		return nil, err
	}
	defer catalog.Close(context.WithoutCancel(ctx))
	refs, err := verifyTables(ctx, cfg, opts.Tables, kopts)
	if err != nil {
		return nil, err
	}
	infos, missing, err := catalog.DiscoverPresent(ctx, refs)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, &VerifyUsageError{missing[0]}
	}
	for i := range infos {
		if err := verifiable(&cfg, &infos[i]); err != nil {
			return nil, &VerifyUsageError{err}
		}
	}
	if cfg.Format.JSON() {
		return nil, &VerifyUsageError{errJSONVerify}
	}
	registry, err := schema.NewRegistry(cfg.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	dec, err := schema.NewDecoder(cfg.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	sc, err := pgsrc.OpenScanner(ctx, &cfg.Source)
	if err != nil {
		return nil, err
	}
	defer sc.Close(context.WithoutCancel(ctx))
	v := &verifier{cfg: &cfg, opts: opts, kopts: kopts, catalog: catalog, registry: registry, dec: dec, sc: sc, log: log, seed: maphash.MakeSeed(), maxKeys: repairKeys,
		source: schema.Source{Version: Version, Connector: "postgresql", Name: cfg.Name, DB: cfg.Source.Database}}
	c := newCodecs(&cfg, catalog, registry, v.source, nil, nil, nil, log)
	reps := make([]VerifyReport, 0, len(infos))
	for i := range infos {
		rep, err := v.table(ctx, c, &infos[i])
		if err != nil {
			return reps, err
		}
		reps = append(reps, *rep)
	}
	return reps, nil
}

// verifyTables resolves the tables to verify.
func verifyTables(ctx context.Context, cfg Config, names []string, kopts []kgo.Opt) ([]pgsrc.TableRef, error) {
	bound := cfg.Tables()
	if len(names) == 0 {
		if len(bound) > 0 {
			return bound, nil
		}
		cp, err := offsets.Load(ctx, kopts, cfg.Kafka.OffsetsTopic, cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
		}
		if cp == nil || len(cp.Tables) == 0 {
			return nil, &VerifyUsageError{fmt.Errorf("no bindings and no checkpoint of %q in %s: name the tables to verify, as SCHEMA.TABLE", cfg.Name, cfg.Kafka.OffsetsTopic)}
		}
		for name := range cp.Tables {
			names = append(names, name)
		}
		sort.Strings(names)
	}
	refs := make([]pgsrc.TableRef, 0, len(names))
	for _, n := range names {
		ref, err := pgsrc.ParseTableRef(n)
		if err != nil {
			return nil, &VerifyUsageError{fmt.Errorf("table %s", err)}
		}
		if len(bound) > 0 && !slices.Contains(bound, ref) {
			return nil, &VerifyUsageError{fmt.Errorf("table %s is not among the bindings", n)}
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// verifiable refuses the tables whose topic is not the table row for row
// under the table's own key.
func verifiable(cfg *Config, t *pgsrc.Table) error {
	ref := t.Ref()
	switch {
	case len(t.KeyColumns) == 0:
		return fmt.Errorf("table %s has no primary key (nor replica identity index): its records have null keys, so its topic has no compacted state to compare; verify refuses it", ref)
	case !slices.Equal(cfg.messageKey(t), t.KeyColumns):
		return fmt.Errorf("table %s: bindings[].key makes the Kafka key (%s) other than the table's key (%s), so a topic key may stand for several rows; verify refuses it",
			ref, strings.Join(cfg.messageKey(t), ", "), strings.Join(t.KeyColumns, ", "))
	case cfg.route(ref) != nil:
		return fmt.Errorf("table %s goes to topic %s by kafka.topicRoutes, shared with other tables; verify refuses routed tables", ref, cfg.TopicFor(ref))
	case cfg.outboxOf(ref) != nil:
		return fmt.Errorf("table %s is an outbox: its inserts are events on other topics, not a table's state; verify refuses it", ref)
	}
	return nil
}

type verifier struct {
	cfg      *Config
	opts     VerifyOptions
	kopts    []kgo.Opt
	catalog  *pgsrc.Catalog
	registry *schema.Registry
	dec      *schema.Decoder
	sc       *pgsrc.Scanner
	source   schema.Source
	log      *slog.Logger
	seed     maphash.Seed
	// maxKeys > 0: plan repairs, naming at most maxKeys keys a table.
	maxKeys int
}

// topicEntry is the compacted state of one key: its latest record.
type topicEntry struct {
	hash      uint64 // of the after image; 0 when deleted
	offset    int64
	partition int32
	present   bool // the latest record is not a delete or tombstone
	seen      bool // the table has the key (first pass)
}

// sideState is what one side holds for a key, in one check.
type sideState struct {
	present bool
	hash    uint64
	offset  int64 // topic side: the latest record's offset (-1: none)
}

// candidate is a key found different, checked again.
type candidate struct {
	table, topic sideState
	tableAfter   map[string]any
	stable       int // consecutive checks in the same states
}

// verifyCodec builds the codec backfills encode the table's rows with
// (codecs.forBackfill), without registering anything.
func (v *verifier) verifyCodec(ctx context.Context, c *codecs, info *pgsrc.Table) (*schema.Codec, error) {
	ref := info.Ref()
	rel := &pgsrc.Relation{Namespace: ref.Schema, Name: ref.Name, ReplicaIdentity: info.ReplicaIdentity}
	for _, col := range info.Columns {
		if col.Sent() {
			rel.Columns = append(rel.Columns, pgsrc.RelationColumn{Name: col.Name, TypeOID: col.Type.OID, TypeMod: col.Typmod})
		}
	}
	st, err := c.schemaTable(ctx, rel, info)
	if err != nil {
		return nil, err
	}
	env, _ := v.cfg.Format.ParsedEnvelope()
	if err := v.registry.Inherit(ctx, &st, env); err != nil {
		return nil, fmt.Errorf("reading the registered schema of %s: %w", ref, err)
	}
	codec, err := schema.NewCodec(st, v.cfg.Format, v.source)
	if err != nil {
		return nil, fmt.Errorf("building the schema of %s: %w", ref, err)
	}
	return codec, nil
}

// tableSide reads a table's rows and encodes them as a backfill would.
type tableSide struct {
	v      *verifier
	info   *pgsrc.Table
	order  *pgsrc.KeyOrder
	codec  *schema.Codec
	binary []bool
	chunk  int
	after  []schema.Datum
	ev     schema.Event
	buf    []byte
	key    []byte
	rows   int64
	estim  int64
	flat   bool
}

// scan calls fn with each row's key (Avro, unframed; valid during the
// call) and a func decoding its after image.
func (ts *tableSide) scan(ctx context.Context, fn func(key []byte, after func() (map[string]any, error)) error) error {
	ts.rows = 0
	var after [][]byte
	for {
		end, full, err := ts.v.sc.ChunkEnd(ctx, ts.info, ts.order, after, ts.chunk)
		if err != nil {
			return err
		}
		_, err = ts.v.sc.ScanChunk(ctx, ts.info, ts.order, after, end, ts.binary, func(row []pgsrc.Value) error {
			ts.rows++
			ts.after = datums(ts.after, row)
			ts.ev.After = ts.after
			var err error
			if ts.key, err = ts.codec.AppendKey(ts.key[:0], ts.after); err != nil {
				return fmt.Errorf("encoding the key of a row of %s: %w", ts.info.Ref(), err)
			}
			return fn(ts.key[5:], func() (map[string]any, error) {
				if ts.buf, err = ts.codec.AppendValue(ts.buf[:0], &ts.ev); errors.Is(err, schema.ErrNotRepresentable) {
					return map[string]any{}, nil // no record carries it: the key shows as missing
				} else if err != nil {
					return nil, fmt.Errorf("encoding a row of %s: %w", ts.info.Ref(), err)
				}
				val, err := ts.codec.DecodeValue(ts.buf)
				if err != nil {
					return nil, fmt.Errorf("decoding a row of %s as encoded: %w", ts.info.Ref(), err)
				}
				img, _ := afterImage(val, ts.flat)
				return img, nil
			})
		})
		if err != nil {
			return err
		}
		if ts.v.opts.Progress != nil {
			ts.v.opts.Progress(ts.info.Ref().String(), ts.rows, ts.estim)
		}
		if !full {
			return nil
		}
		after = end
	}
}

// afterImage returns the row image of a decoded value: Debezium's after
// (nil for a delete), or a flat record's columns (nil when __deleted).
func afterImage(v any, flat bool) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	if !flat {
		if op, _ := m["op"].(string); op == "d" || op == "t" {
			return nil, false
		}
		a, ok := unionValue(m["after"]).(map[string]any)
		return a, ok && a != nil
	}
	if d, _ := unionValue(m["__deleted"]).(string); d == "true" {
		return nil, false
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		if k != "__op" && k != "__lsn" && k != "__deleted" {
			out[k] = x
		}
	}
	return out, true
}

// unionValue unwraps hamba/avro's generic form of a union branch that is
// not null ({"type": value}), when it is one.
func unionValue(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for _, x := range m {
			return x
		}
	}
	return v
}

// hashImage hashes a row image canonically: columns by name, values by
// their decoded Go form, so records of other schema versions compare by
// column.
func (v *verifier) hashImage(img map[string]any) uint64 {
	var h maphash.Hash
	h.SetSeed(v.seed)
	names := make([]string, 0, len(img))
	for k := range img {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		h.WriteString(k)
		h.WriteByte(0)
		hashValue(&h, img[k])
	}
	s := h.Sum64()
	if s == 0 {
		s = 1 // 0 is "no image"
	}
	return s
}

func hashValue(h *maphash.Hash, x any) {
	var b [8]byte
	switch x := x.(type) {
	case nil:
		h.WriteByte('n')
	case bool:
		h.WriteByte('b')
		if x {
			h.WriteByte(1)
		} else {
			h.WriteByte(0)
		}
	case int:
		h.WriteByte('i')
		binary.LittleEndian.PutUint64(b[:], uint64(x))
		h.Write(b[:])
	case int32:
		h.WriteByte('i')
		binary.LittleEndian.PutUint64(b[:], uint64(x))
		h.Write(b[:])
	case int64:
		h.WriteByte('i')
		binary.LittleEndian.PutUint64(b[:], uint64(x))
		h.Write(b[:])
	case float32:
		h.WriteByte('f')
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(float64(x)))
		h.Write(b[:])
	case float64:
		h.WriteByte('f')
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(x))
		h.Write(b[:])
	case string:
		h.WriteByte('s')
		binary.LittleEndian.PutUint64(b[:], uint64(len(x)))
		h.Write(b[:])
		h.WriteString(x)
	case []byte:
		h.WriteByte('y')
		binary.LittleEndian.PutUint64(b[:], uint64(len(x)))
		h.Write(b[:])
		h.Write(x)
	case time.Time:
		h.WriteByte('t')
		binary.LittleEndian.PutUint64(b[:], uint64(x.UnixNano()))
		h.Write(b[:])
	case time.Duration:
		h.WriteByte('d')
		binary.LittleEndian.PutUint64(b[:], uint64(x))
		h.Write(b[:])
	case *big.Rat:
		h.WriteByte('r')
		h.WriteString(x.RatString())
	case []any:
		h.WriteByte('[')
		for _, e := range x {
			hashValue(h, e)
		}
		h.WriteByte(']')
	case map[string]any:
		h.WriteByte('{')
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			h.WriteString(k)
			h.WriteByte(0)
			hashValue(h, x[k])
		}
		h.WriteByte('}')
	default:
		fmt.Fprintf(h, "%T:%v", x, x)
	}
}

// topicSide folds a topic into its compacted state, continuing from where
// it stopped at each call.
type topicSide struct {
	v      *verifier
	topic  string
	flat   bool
	client *kgo.Client
	adm    *kadm.Client
	next   map[int32]int64
	state  map[string]topicEntry
	// only, when set, are the keys (unframed) whose state is kept: the
	// records of others are counted, not decoded.
	only    map[string]bool
	records int64
}

func (t *topicSide) close() {
	if t.client != nil {
		t.client.Close()
	}
	if t.adm != nil {
		t.adm.Close()
	}
}

// readToEnd reads the topic up to its last stable offsets as of the call
// (read_committed), folding each record into the state.
func (t *topicSide) readToEnd(ctx context.Context) error {
	ends, err := t.adm.ListCommittedOffsets(ctx, t.topic)
	if err != nil {
		return fmt.Errorf("listing the end of topic %s: %w", t.topic, err)
	}
	target := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > t.next[o.Partition] {
			target[o.Partition] = o.Offset
		}
	})
	if err := ends.Error(); err != nil {
		return fmt.Errorf("listing the end of topic %s: %w", t.topic, err)
	}
	if len(target) == 0 {
		return nil
	}
	if t.client == nil {
		parts := map[int32]kgo.Offset{}
		for p := range target {
			parts[p] = kgo.NewOffset().At(t.next[p])
		}
		if t.client, err = kgo.NewClient(append(slices.Clone(t.v.kopts),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.topic: parts}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.KeepControlRecords(), // the last offsets may be commit markers
			kgo.FetchMaxWait(100*time.Millisecond))...); err != nil {
			return fmt.Errorf("kafka consumer: %w", err)
		}
	} else {
		// Partitions new since the first read (none, unless the topic
		// grew): consumed from their start.
		add := map[int32]kgo.Offset{}
		for p := range target {
			if _, ok := t.next[p]; !ok {
				add[p] = kgo.NewOffset().At(0)
				t.next[p] = 0
			}
		}
		if len(add) > 0 {
			t.client.AddConsumePartitions(map[string]map[int32]kgo.Offset{t.topic: add})
		}
	}
	behind := func() bool {
		for p, end := range target {
			if t.next[p] < end {
				return true
			}
		}
		return false
	}
	for behind() {
		fs := t.client.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fs.Errors() {
			return fmt.Errorf("reading topic %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			t.next[r.Partition] = r.Offset + 1
			if err := t.fold(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// fold makes r the latest record of its key.
func (t *topicSide) fold(ctx context.Context, r *kgo.Record) error {
	if r.Attrs.IsControl() {
		return nil
	}
	t.records++
	if len(r.Key) < 5 {
		return nil // a null key (a truncate): no row's
	}
	if t.only != nil && !t.only[string(r.Key[5:])] {
		return nil
	}
	e := topicEntry{offset: r.Offset, partition: r.Partition}
	if r.Value != nil {
		val, err := t.v.dec.Decode(ctx, r.Value)
		if err != nil {
			return fmt.Errorf("value at %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		if img, ok := afterImage(val, t.flat); ok {
			e.present, e.hash = true, t.v.hashImage(img)
		}
	}
	k := r.Key[5:]
	if old, ok := t.state[string(k)]; ok {
		e.seen = old.seen
	}
	t.state[string(k)] = e
	return nil
}

// afterAt reads the after image of the record at partition p, offset o.
func (t *topicSide) afterAt(ctx context.Context, p int32, o int64) (map[string]any, error) {
	cl, err := kgo.NewClient(append(slices.Clone(t.v.kopts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.topic: {p: kgo.NewOffset().At(o)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, fe := range fs.Errors() {
			return nil, fe.Err
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			if r.Offset != o {
				continue
			}
			val, err := t.v.dec.Decode(ctx, r.Value)
			if err != nil {
				return nil, err
			}
			img, _ := afterImage(val, t.flat)
			return img, nil
		}
	}
}

func (t *topicSide) now(k string) sideState {
	e, ok := t.state[k]
	if !ok {
		return sideState{offset: -1}
	}
	return sideState{present: e.present, hash: e.hash, offset: e.offset}
}

// table compares one table with its topic.
func (v *verifier) table(ctx context.Context, c *codecs, info *pgsrc.Table) (*VerifyReport, error) {
	ref := info.Ref()
	rep := &VerifyReport{Table: ref.String(), Topic: v.cfg.TopicFor(ref)}
	codec, err := v.verifyCodec(ctx, c, info)
	if err != nil {
		return nil, err
	}
	flat := codec.Envelope() == schema.EnvelopeFlat
	order, err := v.sc.KeyOrder(ctx, info, info.KeyColumns)
	if err != nil {
		return nil, err
	}
	chunk := v.cfg.Source.Advanced.BackfillChunkSize
	if chunk < 10000 {
		chunk = 10000
	}
	ts := &tableSide{v: v, info: info, order: order, codec: codec, binary: v.cfg.textHashed(info, binaryColumns(info)), chunk: chunk, estim: info.Estimated, flat: flat,
		ev: schema.Event{Op: schema.OpRead, TxID: -1, LSN: -1, Snapshot: "true"}}
	adm, err := kgo.NewClient(v.kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	tp := &topicSide{v: v, topic: rep.Topic, flat: flat, adm: kadm.NewClient(adm), next: map[int32]int64{}, state: map[string]topicEntry{}}
	defer tp.close()

	// First pass: the topic to its end, then the table, each row looked
	// up in the topic's state by its key and compared by hash.
	if err := tp.readToEnd(ctx); err != nil {
		return nil, err
	}
	cands := map[string]*candidate{}
	err = ts.scan(ctx, func(key []byte, after func() (map[string]any, error)) error {
		img, err := after()
		if err != nil {
			return err
		}
		h := v.hashImage(img)
		e, ok := tp.state[string(key)]
		if ok {
			e.seen = true
			tp.state[string(key)] = e
		}
		if ok && e.present && e.hash == h {
			return nil
		}
		k := string(key)
		cands[k] = &candidate{table: sideState{present: true, hash: h}, topic: tp.now(k)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Rows = ts.rows
	for k, e := range tp.state {
		if e.present {
			rep.TopicKeys++
			if !e.seen {
				cands[k] = &candidate{table: sideState{offset: -1}, topic: tp.now(k)}
			}
		}
	}
	v.log.Debug("verify: first pass", "table", rep.Table, "rows", rep.Rows, "topic_keys", rep.TopicKeys, "records", tp.records, "candidates", len(cands))

	// Re-checks of the keys found different: read their rows again, wait
	// until the capture has written every change those reads could see,
	// read the topic on to its end. A key is different when it is so in
	// two checks in a row with neither side changed in between (the
	// table's row hashed the same, the topic's latest record the same
	// offset).
	confirmed := map[string]*candidate{}
	for len(cands) > 0 && rep.Rounds < v.opts.MaxRounds {
		rep.Rounds++
		seen := map[string]bool{}
		err := ts.scan(ctx, func(key []byte, after func() (map[string]any, error)) error {
			cd := cands[string(key)]
			if cd == nil {
				return nil
			}
			img, err := after()
			if err != nil {
				return err
			}
			seen[string(key)] = true
			st := sideState{present: true, hash: v.hashImage(img)}
			if st != cd.table {
				cd.stable = -1
			}
			cd.table, cd.tableAfter = st, img
			return nil
		})
		if err != nil {
			return nil, err
		}
		for k, cd := range cands {
			if !seen[k] {
				st := sideState{offset: -1}
				if st != cd.table {
					cd.stable = -1
				}
				cd.table, cd.tableAfter = st, nil
			}
		}
		v.log.Debug("verify: re-check", "table", rep.Table, "round", rep.Rounds, "candidates", len(cands))
		if note, err := v.catchUp(ctx); err != nil {
			return nil, err
		} else if note != "" && !slices.Contains(rep.Notes, note) {
			rep.Notes = append(rep.Notes, note)
		}
		if err := tp.readToEnd(ctx); err != nil {
			return nil, err
		}
		for k, cd := range cands {
			now := tp.now(k)
			if now != cd.topic {
				cd.stable = -1
			}
			cd.topic = now
			switch {
			case cd.table.present == now.present && (!now.present || cd.table.hash == now.hash):
				delete(cands, k) // equal now
			case cd.stable >= 0:
				confirmed[k] = cd
				delete(cands, k)
			default:
				cd.stable = 0
			}
		}
	}
	rep.Unsettled = len(cands)
	keys := make([]string, 0, len(confirmed))
	for k := range confirmed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	keyText := func(k string) string { return formatKey(codec, []byte(k)) }
	var extra []string
	for _, k := range keys {
		cd := confirmed[k]
		if !cd.table.present {
			extra = append(extra, k)
		}
		switch {
		case cd.table.present && !cd.topic.present:
			rep.NMissing++
			if len(rep.Missing) < v.opts.Show {
				rep.Missing = append(rep.Missing, keyText(k))
			}
		case !cd.table.present && cd.topic.present:
			rep.NExtra++
			if len(rep.Extra) < v.opts.Show {
				rep.Extra = append(rep.Extra, keyText(k))
			}
		default:
			rep.NDiffer++
			if len(rep.Differ) < v.opts.Show {
				d := KeyDiff{Key: keyText(k)}
				e := tp.state[k]
				topicAfter, err := tp.afterAt(ctx, e.partition, e.offset)
				if err != nil {
					return nil, fmt.Errorf("reading the record of key %s of %s: %w", d.Key, rep.Topic, err)
				}
				d.Columns = differingColumns(cd.tableAfter, topicAfter)
				rep.Differ = append(rep.Differ, d)
			}
		}
	}
	if v.maxKeys > 0 && len(keys) > 0 {
		rep.repair = v.planRepair(ctx, info, codec, keys, extra)
	}
	return rep, nil
}

// differingColumns names the columns whose values differ between two row
// images (a column one lacks counts).
func differingColumns(a, b map[string]any) []string {
	var cols []string
	for k, x := range a {
		y, ok := b[k]
		if !ok || !sameValue(x, y) {
			cols = append(cols, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			cols = append(cols, k)
		}
	}
	sort.Strings(cols)
	return cols
}

func sameValue(x, y any) bool {
	var hx, hy maphash.Hash
	seed := maphash.MakeSeed()
	hx.SetSeed(seed)
	hy.SetSeed(seed)
	hashValue(&hx, x)
	hashValue(&hy, y)
	return hx.Sum64() == hy.Sum64()
}

// formatKey prints a key (Avro, unframed) as its columns: id=5.
func formatKey(codec *schema.Codec, key []byte) string {
	names, values, err := codec.DecodeKey(key)
	if err != nil {
		return fmt.Sprintf("%x", key)
	}
	var parts []string
	for i, name := range names {
		x := unionValue(values[i])
		if b, ok := x.([]byte); ok {
			x = fmt.Sprintf("\\x%x", b)
		}
		parts = append(parts, fmt.Sprintf("%s=%v", name, x))
	}
	return strings.Join(parts, ",")
}

// catchUp waits until the capture has written every change committed
// before now: its checkpoint, or its slot's confirmed position (which
// never passes what Kafka holds), at or past the server's WAL position. It
// returns a note when it cannot: no capture runs, or it did not catch up
// within VerifyOptions.CatchUp.
func (v *verifier) catchUp(ctx context.Context) (string, error) {
	at, err := v.sc.CurrentLSN(ctx)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(v.opts.CatchUp)
	for {
		lease, err := v.catalog.Lease(ctx, v.cfg.Name)
		if err != nil {
			return "", err
		}
		reached, err := v.reached(ctx)
		if err != nil {
			return "", err
		}
		if reached >= at {
			return "", nil
		}
		if lease.Active == nil {
			return fmt.Sprintf("no capture of %q is running: the topic holds the changes up to LSN %s; rows changed since show as differences", v.cfg.Name, reached), nil
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("the capture did not reach LSN %s within %s (it is at %s): keys it had not written yet show as differences", at, v.opts.CatchUp, reached), nil
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		}
	}
}

// reached is how far the capture has written: the greater of its
// checkpoint's LSN and its slot's confirmed position.
func (v *verifier) reached(ctx context.Context) (pglogrepl.LSN, error) {
	var at pglogrepl.LSN
	cp, err := offsets.Load(ctx, v.kopts, v.cfg.Kafka.OffsetsTopic, v.cfg.Name)
	if err != nil {
		return 0, fmt.Errorf("kafka at %v: %w", v.cfg.Kafka.Brokers, err)
	}
	if cp != nil && cp.Partial == nil {
		at = cp.LSN
	}
	slot, err := v.catalog.Slot(ctx, v.cfg.Source.Advanced.SlotName)
	if err != nil {
		return 0, err
	}
	if slot.Exists {
		at = max(at, slot.ConfirmedFlush)
	}
	return at, nil
}
