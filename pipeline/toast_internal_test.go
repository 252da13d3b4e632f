package pipeline

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// toastFixture is a reconciler with a byte budget and a table (id, big, n)
// keyed by id.
func toastFixture(t *testing.T, budget int64) (*toastReconciler, *tableCodec) {
	t.Helper()
	cfg := &Config{Toast: ToastConfig{CacheBytes: budget}}
	r := newToastReconciler(cfg, newMetrics(), nil)
	rel := &pgsrc.Relation{Namespace: "public", Name: "t", ReplicaIdentity: 'd',
		Columns: []pgsrc.RelationColumn{{Name: "id", TypeOID: 23}, {Name: "big", TypeOID: 25}, {Name: "n", TypeOID: 23}}}
	info := &pgsrc.Table{Schema: "public", Name: "t"}
	return r, &tableCodec{rel: rel, key: []int{0}, toast: r.table(info, rel)}
}

func toastRow(id int, big []byte, n int) []pgsrc.Value {
	v := func(b []byte) pgsrc.Value { return pgsrc.Value{Kind: pgsrc.ValueText, Data: b} }
	row := []pgsrc.Value{v([]byte(strconv.Itoa(id))), v(big), v([]byte(strconv.Itoa(n)))}
	if big == nil {
		row[1] = pgsrc.Value{Kind: pgsrc.ValueUnchanged}
	}
	return row
}

func cachedIDs(r *toastReconciler) string {
	var b bytes.Buffer
	for e := r.head; e != nil; e = e.next {
		b.WriteString(e.key[len(e.key)-1:]) // one-digit ids
	}
	return b.String()
}

// TestToastCacheLRU: the cache keeps large values only, within its byte
// budget, evicting the least recently used row (a lookup counts as a use);
// deletes, truncates and small values forget what they replace.
func TestToastCacheLRU(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 3000)
	r, tc := toastFixture(t, 1<<20)
	ctx := context.Background()

	r.observe(tc, toastRow(9, []byte("small"), 0))
	if len(r.entries) != 0 {
		t.Fatalf("a small row was cached: %q", cachedIDs(r))
	}
	r.observe(tc, toastRow(1, big, 0))
	entry := r.bytes // with the value's capacity (a size class)
	if entry < 3000+toastEntryOverhead {
		t.Fatalf("an entry of a 3000-byte value counted as %d bytes", entry)
	}
	r.maxBytes = 2 * entry
	r.observe(tc, toastRow(2, big, 0))
	if got := cachedIDs(r); got != "21" || r.bytes != 2*entry {
		t.Fatalf("cached %q, %d bytes; want 21, %d bytes", got, r.bytes, 2*entry)
	}
	// An update of row 1 that leaves big unchanged is filled from the cache
	// and makes row 1 the most recently used: row 2 goes when row 3 comes.
	ch := &pgsrc.Change{Op: pgsrc.OpUpdate, Rel: tc.rel, New: toastRow(1, nil, 1)}
	if err := r.update(ctx, tc, ch, func([]pgsrc.Value) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ch.New[1].Data, big) {
		t.Fatalf("big not filled from the cache: %v", ch.New[1])
	}
	r.observe(tc, toastRow(3, big, 0))
	if got := cachedIDs(r); got != "31" {
		t.Fatalf("cached %q after row 3, want 31 (row 2 evicted)", got)
	}
	// A value set small is forgotten; so is a deleted row.
	r.observe(tc, toastRow(3, []byte("now small"), 2))
	r.forget(tc, toastRow(1, nil, 0))
	if len(r.entries) != 0 || r.bytes != 0 || r.head != nil || r.tail != nil || r.perTable[tc.toast.id] != 0 {
		t.Fatalf("left %q, %d bytes, %d entries of the table", cachedIDs(r), r.bytes, r.perTable[tc.toast.id])
	}
	// A truncate forgets the table's rows.
	r.observe(tc, toastRow(4, big, 0))
	r.observe(tc, toastRow(5, big, 0))
	r.forgetTable(tc)
	if len(r.entries) != 0 || r.bytes != 0 {
		t.Fatalf("left %q after a truncate", cachedIDs(r))
	}
	// A value larger than the whole budget is not kept.
	r.observe(tc, toastRow(6, bytes.Repeat([]byte("y"), int(3*entry)), 0))
	if len(r.entries) != 0 || r.bytes != 0 {
		t.Fatalf("kept %q, %d bytes, over the budget", cachedIDs(r), r.bytes)
	}
}

// TestToastObserveAllocs: rows of small values cost no allocation, and
// neither does replacing a cached value by one of the same size.
func TestToastObserveAllocs(t *testing.T) {
	r, tc := toastFixture(t, 1<<20)
	small := toastRow(1, []byte("small"), 0)
	if n := testing.AllocsPerRun(100, func() { r.observe(tc, small) }); n != 0 {
		t.Errorf("%v allocations to observe a small row", n)
	}
	r.observe(tc, toastRow(2, bytes.Repeat([]byte("x"), 3000), 0))
	again := toastRow(2, bytes.Repeat([]byte("z"), 3000), 1)
	if n := testing.AllocsPerRun(100, func() { r.observe(tc, again) }); n != 0 {
		t.Errorf("%v allocations to observe a new value of a cached row", n)
	}
	if n := testing.AllocsPerRun(100, func() { r.observe(tc, small) }); n != 0 {
		t.Errorf("%v allocations to observe a small row of a table with cached rows", n)
	}
}

// TestToastKeyChange: an update that changes the key and leaves big alone
// finds big under the old key, and the row's values move to the new one.
func TestToastKeyChange(t *testing.T) {
	r, tc := toastFixture(t, 1<<20)
	big := bytes.Repeat([]byte("x"), 3000)
	r.observe(tc, toastRow(1, big, 0))
	old := []pgsrc.Value{{Kind: pgsrc.ValueText, Data: []byte("1")}, {Kind: pgsrc.ValueNull}, {Kind: pgsrc.ValueNull}}
	ch := &pgsrc.Change{Op: pgsrc.OpUpdate, Rel: tc.rel, Old: old, OldKind: 'K', New: toastRow(7, nil, 0)}
	if err := r.update(context.Background(), tc, ch, func([]pgsrc.Value) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ch.New[1].Data, big) {
		t.Fatalf("big not filled from the old key's entry: %v", ch.New[1])
	}
	if got := cachedIDs(r); got != "7" {
		t.Fatalf("cached rows %q, want 7 alone", got)
	}
}

// TestToastRelease: a value read from the database fills the change, and
// release gives the change back its unchanged marker once encoded, so that
// the batch does not keep the value; values from the change itself stay.
func TestToastRelease(t *testing.T) {
	r, tc := toastFixture(t, 0) // no cache: the database path
	big := bytes.Repeat([]byte("x"), 3000)
	ch := &pgsrc.Change{Op: pgsrc.OpUpdate, Rel: tc.rel, OldKind: 0, New: toastRow(1, nil, 5)}
	key, ok := r.key(tc, ch.New)
	if !ok {
		t.Fatal("no key")
	}
	// As fetch leaves it: the row read for this batch.
	r.fetched[string(key)] = toastRow(1, bytes.Clone(big), 4)
	if err := r.update(context.Background(), tc, ch, func([]pgsrc.Value) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ch.New[1].Data, big) || string(ch.New[2].Data) != "5" {
		t.Fatalf("after update: %v", ch.New)
	}
	r.release(ch)
	if ch.New[1].Kind != pgsrc.ValueUnchanged || ch.New[1].Data != nil || string(ch.New[2].Data) != "5" {
		t.Fatalf("after release: %v", ch.New)
	}
	r.release(ch) // nothing more to give back
	if len(r.fromDB) != 0 {
		t.Fatalf("fromDB %v after release", r.fromDB)
	}
}
