package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// The TOAST reconciler (DESIGN §4). PostgreSQL stores a large value out of
// line (TOAST), and an update that leaves it alone sends it in pgoutput as
// "unchanged" ('u'), without its bytes. The reconciler fills such a value,
// in this order:
//
//  1. from the old tuple, which REPLICA IDENTITY FULL sends whole;
//  2. from the last value seen for the row's key and column: a cache fed by
//     the changes (inserts and updates that carry the value, whether they
//     pass the backfill's filter or not) and by backfilled rows, forgotten
//     on deletes and truncates, bounded by toast.cacheBytes, least recently
//     used first out. Only values of at least toastMinBytes are kept (what
//     PostgreSQL moves out of line is that large but in very wide rows), so
//     tables of small rows cost a scan of their lengths and nothing more;
//  3. by reading the row from the database by key (pgsrc.Fetcher), for the
//     change and, in the same statement, for the other changes of the batch
//     that need it: the row read is the current one, possibly newer than
//     the change (the value of a later update, or of a row deleted and
//     inserted again);
//  4. when all fail (the row is gone from the database), the value stays
//     unchanged: the codec writes Debezium's marker where the column's type
//     can carry it; otherwise toast.unavailable decides: "fail" stops the
//     capture with the table and column, "null" writes null in nullable
//     columns (lastResort).
//
// Each value filled or not is counted in pgkafka_toast_values_total by path.

// Reconciler limits.
const (
	// toastMinBytes is the text length from which a value is cached: about
	// TOAST_TUPLE_THRESHOLD (2032 bytes with 8 kB pages), below which a row
	// is stored inline whole.
	toastMinBytes = 2000
	// toastEntryOverhead is what an entry costs besides its key and values
	// (the entry, its map slot, its column slice), for the byte bound.
	toastEntryOverhead = 160
	// toastFetchKeys caps the keys read from the database in one statement.
	toastFetchKeys = 64
	// toastFetchBytes caps the bytes kept of the rows read ahead for later
	// changes of a batch (the row of the change being reconciled is always
	// kept).
	toastFetchBytes = 4 << 20
)

// toastReconciler is the serializer's (one goroutine).
type toastReconciler struct {
	src      *pgsrc.Config
	maxBytes int64
	// nullUnavailable: toast.unavailable is "null".
	nullUnavailable bool
	log             *slog.Logger

	oldTuple, cached, database, unavailable prometheus.Counter

	// ids numbers table shapes (name, column names and types): a codec of a
	// new shape has a new id, so values of an older shape are never used.
	ids map[string]uint32
	// The cache: entries by key (table id, then the key's text values),
	// in a list from the most recently used (head) to the least (tail).
	entries    map[string]*toastEntry
	head, tail *toastEntry
	bytes      int64
	perTable   []int // entries per table id
	buf        []byte

	fetcher *pgsrc.Fetcher
	// changes is the batch being serialized, read ahead by fetch.
	changes []pgsrc.Change
	// fetched holds the rows read from the database for this batch, by
	// entry key, full width (the columns not read are ValueUnchanged); nil
	// for a key that no row holds.
	fetched      map[string][]pgsrc.Value
	fetchedBytes int
	// fromDB holds the columns of the change at hand filled from fetched.
	fromDB []int
}

// toastEntry is the cached values of one row.
type toastEntry struct {
	key        string
	table      uint32
	cols       []toastCol
	size       int64
	prev, next *toastEntry
}

type toastCol struct {
	idx  int  // the column's index in the relation
	kind byte // pgsrc.ValueText, or pgsrc.ValueBinary when val is a binary pgoutput value
	val  []byte
}

// toastTable is a table codec's handle on the reconciler.
type toastTable struct {
	id uint32 // 0: not captured
	// cache is false under REPLICA IDENTITY FULL (the old tuple has every
	// value) and when the cache is disabled.
	cache bool
	info  *pgsrc.Table
	// gone: the table was dropped, no row of it is left to read.
	gone bool
}

func newToastReconciler(cfg *Config, m *Metrics, log *slog.Logger) *toastReconciler {
	return &toastReconciler{
		src:             &cfg.Source,
		maxBytes:        cfg.Toast.CacheBytes,
		nullUnavailable: cfg.Toast.Unavailable == "null",
		log:             log,
		oldTuple:        m.toast.WithLabelValues(ToastOldTuple),
		cached:          m.toast.WithLabelValues(ToastCache),
		database:        m.toast.WithLabelValues(ToastDatabase),
		unavailable:     m.toast.WithLabelValues(ToastUnavailable),
		ids:             make(map[string]uint32),
		entries:         make(map[string]*toastEntry),
		perTable:        []int{0},
		fetched:         make(map[string][]pgsrc.Value),
	}
}

// table returns the handle of a captured relation (built once per codec).
func (r *toastReconciler) table(info *pgsrc.Table, rel *pgsrc.Relation) toastTable {
	shape := info.Ref().String()
	for _, c := range rel.Columns {
		shape += fmt.Sprintf("\x00%s\x00%d", c.Name, c.TypeOID)
	}
	id := r.ids[shape]
	if id == 0 {
		id = uint32(len(r.perTable))
		r.ids[shape] = id
		r.perTable = append(r.perTable, 0)
	}
	return toastTable{id: id, cache: r.maxBytes > 0 && rel.ReplicaIdentity != 'f', info: info}
}

// batch starts a batch of changes: the rows read ahead for the last one
// are dropped.
func (r *toastReconciler) batch(changes []pgsrc.Change) {
	r.changes = changes
	if r.fetchedBytes > 0 || len(r.fetched) > 0 {
		clear(r.fetched)
		r.fetchedBytes = 0
	}
}

// release gives ch back the unchanged values that reconcile read from the
// database, once its records are encoded: the batch's changes, kept until
// its end, would otherwise hold every value read for it (a batch of
// thousands of updates of a 1 MB value would hold gigabytes).
func (r *toastReconciler) release(ch *pgsrc.Change) {
	for _, i := range r.fromDB {
		ch.New[i] = pgsrc.Value{Kind: pgsrc.ValueUnchanged}
	}
	r.fromDB = r.fromDB[:0]
}

// close closes the database connection, if one was opened.
func (r *toastReconciler) close(ctx context.Context) error {
	if r.fetcher == nil {
		return nil
	}
	err := r.fetcher.Close(ctx)
	r.fetcher = nil
	return err
}

// update fills the unchanged values of an update, then caches its values.
// admitted tells whether the change is emitted (dblog.go): the database is
// read only for changes that are.
func (r *toastReconciler) update(ctx context.Context, tc *tableCodec, ch *pgsrc.Change, admitted func([]pgsrc.Value) bool) error {
	if unchangedIn(ch.New) {
		if err := r.reconcile(ctx, tc, ch, admitted(ch.New)); err != nil {
			return err
		}
	}
	if ch.OldKind == 'K' {
		r.forget(tc, ch.Old) // the key changed: the row is under the new one
	}
	r.observe(tc, ch.New)
	return nil
}

func unchangedIn(tuple []pgsrc.Value) bool {
	for i := range tuple {
		if tuple[i].Kind == pgsrc.ValueUnchanged {
			return true
		}
	}
	return false
}

// reconcile fills ch.New's unchanged values (see the top of this file);
// needed false stops after the old tuple (the change is not emitted).
func (r *toastReconciler) reconcile(ctx context.Context, tc *tableCodec, ch *pgsrc.Change, needed bool) error {
	missing := 0
	for i := range ch.New {
		if ch.New[i].Kind != pgsrc.ValueUnchanged {
			continue
		}
		if ch.OldKind == 'O' && i < len(ch.Old) && ch.Old[i].Kind != pgsrc.ValueUnchanged {
			ch.New[i] = ch.Old[i]
			r.oldTuple.Inc()
			continue
		}
		missing++
	}
	if missing == 0 || !needed {
		return nil
	}
	// The cache, under the old key when the update changed it.
	if tc.toast.cache {
		img := ch.New
		if ch.OldKind == 'K' {
			img = ch.Old
		}
		if key, ok := r.key(tc, img); ok {
			if e := r.entries[string(key)]; e != nil {
				r.touch(e)
				missing -= fill(ch.New, e.cols, r.cached)
			}
		}
	}
	if missing == 0 {
		return nil
	}
	if tc.toast.gone {
		r.unavailable.Add(float64(missing))
		r.lastResort(tc, ch)
		return nil
	}
	// The database: the row as it is now.
	key, ok := r.key(tc, ch.New)
	if !ok {
		r.unavailable.Add(float64(missing)) // the key itself is unknown
		return nil
	}
	row, read := r.fetched[string(key)]
	if !read || row != nil && !rowCovers(row, ch.New) {
		if err := r.fetch(ctx, tc, ch); err != nil {
			if !errors.Is(err, pgsrc.ErrTableNotFound) {
				return err
			}
			// Dropped since (dropped.go): no row is left to read.
			tc.toast.gone = true
			r.unavailable.Add(float64(missing))
			r.lastResort(tc, ch)
			return nil
		}
		row = r.fetched[string(r.keyBuf(tc, ch.New))]
	}
	for i := range ch.New {
		if ch.New[i].Kind == pgsrc.ValueUnchanged && i < len(row) && row[i].Kind != pgsrc.ValueUnchanged {
			ch.New[i] = row[i]
			r.fromDB = append(r.fromDB, i)
			r.database.Inc()
			missing--
		}
	}
	if missing > 0 {
		r.unavailable.Add(float64(missing))
		r.lastResort(tc, ch)
	}
	return nil
}

// lastResort applies toast.unavailable to the values no path recovered:
// those left unchanged get the marker from the codec, or stop the capture
// when their type cannot carry it, unless the policy is null and the
// column nullable.
func (r *toastReconciler) lastResort(tc *tableCodec, ch *pgsrc.Change) {
	if !r.nullUnavailable {
		return
	}
	for i := range ch.New {
		if ch.New[i].Kind != pgsrc.ValueUnchanged {
			continue
		}
		if markable, nullable := tc.codec.Unavailable(i); !markable && nullable {
			ch.New[i] = pgsrc.Value{Kind: pgsrc.ValueNull}
			r.log.Warn("an unchanged TOASTed value is gone from the database: written as null (toast.unavailable: null)",
				"table", tc.toast.info.Ref().String(), "column", tc.rel.Columns[i].Name, "lsn", ch.LSN.String())
		}
	}
}

// rowCovers reports whether a row read holds every unchanged value of tuple.
func rowCovers(row, tuple []pgsrc.Value) bool {
	for i := range tuple {
		if tuple[i].Kind == pgsrc.ValueUnchanged && (i >= len(row) || row[i].Kind == pgsrc.ValueUnchanged) {
			return false
		}
	}
	return true
}

// fill sets the unchanged values of tuple that cols hold and returns how
// many it set.
func fill(tuple []pgsrc.Value, cols []toastCol, c prometheus.Counter) int {
	n := 0
	for _, col := range cols {
		if col.idx < len(tuple) && tuple[col.idx].Kind == pgsrc.ValueUnchanged {
			tuple[col.idx] = pgsrc.Value{Kind: col.kind, Data: col.val}
			n++
		}
	}
	c.Add(float64(n))
	return n
}

// fetch reads from the database the row of ch, and with it, in the same
// statement, the rows of the next updates of the batch to the same
// relation that lack values the cache does not hold, up to toastFetchKeys
// keys: r.fetched then holds them (nil for keys no row holds).
func (r *toastReconciler) fetch(ctx context.Context, tc *tableCodec, ch *pgsrc.Change) error {
	if r.fetcher == nil {
		f, err := pgsrc.OpenFetcher(ctx, r.src)
		if err != nil {
			return fmt.Errorf("reading unchanged TOASTed values: %w", err)
		}
		r.fetcher = f
	}
	clear(r.fetched)
	r.fetchedBytes = 0
	p := r.planFetch(tc, ch)
	skipped, err := r.readFetch(ctx, tc, p)
	if err != nil {
		return fmt.Errorf("reading unchanged TOASTed values of %s at LSN %s: %w", tc.toast.info.Ref(), ch.LSN, err)
	}
	for n, name := range p.names {
		if _, ok := r.fetched[name]; !ok && !skipped[n] {
			r.fetched[name] = nil // no such row any more
		}
	}
	return nil
}

// toastFetch is what one fetch reads: the rows of keys, whose entry keys
// are names (in the same order, ch's first), and of them the columns
// want marks.
type toastFetch struct {
	keys  [][][]byte // each key's values, in tc.key order
	names []string
	want  []bool // by column index in the relation
}

// planFetch chooses the rows fetch reads: ch's, then those of the later
// updates of the batch to ch's relation that have unchanged values, no
// old tuple to fill them and no cache entry holding them all, up to
// toastFetchKeys keys; and the columns unchanged in any of them.
func (r *toastReconciler) planFetch(tc *tableCodec, ch *pgsrc.Change) *toastFetch {
	p := &toastFetch{want: make([]bool, len(tc.rel.Columns))}
	seen := map[string]bool{}
	add := func(c *pgsrc.Change) {
		k, ok := r.key(tc, c.New)
		if !ok {
			return
		}
		if seen[string(k)] {
			for i := range c.New {
				p.want[i] = p.want[i] || c.New[i].Kind == pgsrc.ValueUnchanged
			}
			return
		}
		if c != ch && tc.toast.cache {
			if e := r.entries[string(k)]; e != nil && covers(e, c.New) {
				return
			}
		}
		name := string(k)
		seen[name] = true
		p.names = append(p.names, name)
		key := make([][]byte, len(tc.key))
		for j, i := range tc.key {
			key[j] = c.New[i].Data
		}
		p.keys = append(p.keys, key)
		for i := range c.New {
			if c.New[i].Kind == pgsrc.ValueUnchanged {
				p.want[i] = true
			}
		}
	}
	add(ch)
	after := false
	for j := range r.changes {
		c := &r.changes[j]
		if c == ch {
			after = true
			continue
		}
		if !after || c.Op != pgsrc.OpUpdate || c.Rel != ch.Rel || c.OldKind == 'O' || !unchangedIn(c.New) {
			continue
		}
		if len(p.keys) == toastFetchKeys {
			break
		}
		add(c)
	}
	return p
}

// readFetch reads the rows p plans into r.fetched, full width (the
// columns not read are ValueUnchanged), keeping the first (ch's) always
// and the others while r.fetchedBytes stays within toastFetchBytes:
// skipped marks those it dropped, to be read again when their change
// comes.
func (r *toastReconciler) readFetch(ctx context.Context, tc *tableCodec, p *toastFetch) (skipped []bool, err error) {
	var cols []string
	var idx []int
	for i, w := range p.want {
		if w {
			cols = append(cols, tc.rel.Columns[i].Name)
			idx = append(idx, i)
		}
	}
	keyCols := make([]string, len(tc.key))
	for j, i := range tc.key {
		keyCols[j] = tc.rel.Columns[i].Name
	}
	skipped = make([]bool, len(p.keys))
	err = r.fetcher.FetchRows(ctx, tc.toast.info, keyCols, cols, p.keys, func(n int, vals []pgsrc.Value) error {
		size := 0
		for _, v := range vals {
			size += len(v.Data)
		}
		if n != 0 && r.fetchedBytes+size > toastFetchBytes {
			skipped[n] = true // read again when its change comes
			return nil
		}
		r.fetchedBytes += size
		row := make([]pgsrc.Value, len(tc.rel.Columns))
		for i := range row {
			row[i].Kind = pgsrc.ValueUnchanged
		}
		for j, v := range vals {
			row[idx[j]] = pgsrc.Value{Kind: v.Kind, Data: append([]byte(nil), v.Data...)}
		}
		r.fetched[p.names[n]] = row
		return nil
	})
	return skipped, err
}

// covers reports whether e holds every unchanged value of tuple.
func covers(e *toastEntry, tuple []pgsrc.Value) bool {
	for i := range tuple {
		if tuple[i].Kind != pgsrc.ValueUnchanged {
			continue
		}
		found := false
		for _, c := range e.cols {
			found = found || c.idx == i
		}
		if !found {
			return false
		}
	}
	return true
}

// observe caches the large values of a row image (an insert, an update
// once reconciled, a backfilled row): the row's entry takes the values the
// image carries, keeps those it leaves unchanged, and drops those it sets
// small or null.
func (r *toastReconciler) observe(tc *tableCodec, tuple []pgsrc.Value) {
	t := &tc.toast
	if !t.cache {
		return
	}
	big := false
	for i := range tuple {
		if isData(tuple[i].Kind) && len(tuple[i].Data) >= toastMinBytes {
			big = true
			break
		}
	}
	if !big && r.perTable[t.id] == 0 {
		return // the common case: nothing to keep, nothing to forget
	}
	key, ok := r.key(tc, tuple)
	if !ok {
		return
	}
	e := r.entries[string(key)]
	if e == nil {
		if !big {
			return
		}
		e = &toastEntry{key: string(key), table: t.id}
		r.entries[e.key] = e
		r.perTable[t.id]++
		r.pushFront(e)
	} else {
		r.touch(e)
	}
	// Update the columns e holds, then add the new large ones.
	cols := e.cols[:0]
	for _, c := range e.cols {
		v := tuple[c.idx]
		switch {
		case v.Kind == pgsrc.ValueUnchanged:
		case isData(v.Kind) && len(v.Data) >= toastMinBytes:
			c.val, c.kind = append(c.val[:0], v.Data...), v.Kind
		default:
			continue
		}
		cols = append(cols, c)
	}
	clear(e.cols[len(cols):]) // the values dropped
	for i := range tuple {
		v := tuple[i]
		if !isData(v.Kind) || len(v.Data) < toastMinBytes || holds(cols, i) {
			continue
		}
		cols = append(cols, toastCol{idx: i, kind: v.Kind, val: append([]byte(nil), v.Data...)})
	}
	e.cols = cols
	size := int64(toastEntryOverhead + len(e.key))
	for _, c := range e.cols {
		size += int64(cap(c.val)) + 32
	}
	r.bytes += size - e.size
	e.size = size
	if len(e.cols) == 0 {
		r.remove(e)
	}
	for r.bytes > r.maxBytes && r.tail != nil {
		r.remove(r.tail)
	}
}

// isData tells a value that carries data: text, or binary (binary pgoutput,
// source.advanced.pgoutputBinary).
func isData(kind byte) bool { return kind == pgsrc.ValueText || kind == pgsrc.ValueBinary }

func holds(cols []toastCol, idx int) bool {
	for _, c := range cols {
		if c.idx == idx {
			return true
		}
	}
	return false
}

// forget drops the cached values of the row whose key tuple holds (a
// delete, or the old key of an update that changed it).
func (r *toastReconciler) forget(tc *tableCodec, tuple []pgsrc.Value) {
	if r.perTable[tc.toast.id] == 0 {
		return
	}
	if key, ok := r.key(tc, tuple); ok {
		if e := r.entries[string(key)]; e != nil {
			r.remove(e)
		}
	}
}

// forgetTable drops every cached value of a table (a truncate).
func (r *toastReconciler) forgetTable(tc *tableCodec) {
	id := tc.toast.id
	for e := r.head; e != nil && r.perTable[id] > 0; {
		next := e.next
		if e.table == id {
			r.remove(e)
		}
		e = next
	}
}

// key returns the entry key of the row tuple belongs to (table id, then
// each key column's length and text), in a reused buffer; ok is false for
// a table without a key or a key column not sent.
func (r *toastReconciler) key(tc *tableCodec, tuple []pgsrc.Value) (key []byte, ok bool) {
	if len(tc.key) == 0 {
		return nil, false
	}
	r.buf = binary.BigEndian.AppendUint32(r.buf[:0], tc.toast.id)
	for _, i := range tc.key {
		if i >= len(tuple) || tuple[i].Kind != pgsrc.ValueText {
			return nil, false
		}
		r.buf = binary.BigEndian.AppendUint32(r.buf, uint32(len(tuple[i].Data)))
		r.buf = append(r.buf, tuple[i].Data...)
	}
	return r.buf, true
}

// keyBuf is key for a tuple known to have one.
func (r *toastReconciler) keyBuf(tc *tableCodec, tuple []pgsrc.Value) []byte {
	k, _ := r.key(tc, tuple)
	return k
}

func (r *toastReconciler) pushFront(e *toastEntry) {
	e.prev, e.next = nil, r.head
	if r.head != nil {
		r.head.prev = e
	}
	r.head = e
	if r.tail == nil {
		r.tail = e
	}
}

func (r *toastReconciler) unlink(e *toastEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		r.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		r.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// touch makes e the most recently used entry.
func (r *toastReconciler) touch(e *toastEntry) {
	if r.head != e {
		r.unlink(e)
		r.pushFront(e)
	}
}

func (r *toastReconciler) remove(e *toastEntry) {
	r.unlink(e)
	delete(r.entries, e.key)
	r.perTable[e.table]--
	r.bytes -= e.size
}
