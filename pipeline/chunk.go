package pipeline

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// The handover of one backfill chunk between the backfill stage
// (backfill.go), which reads it, and the serializer's dblog (dblog.go),
// which emits it in the stream. Every value crosses in one direction
// only, and is not touched again by its sender:
//
//	backfill stage                         serializer (dblog)
//	  chunkPlan ──────────── plans ─────────▶ (waits for its low watermark)
//	  low watermark ─────── WAL ────────────▶ window opened
//	  (reads the chunk) ◀──── opened ──────── its rows' codec, commits seen
//	  chunkResult ────────── result ────────▶
//	  high watermark ────── WAL ────────────▶ rows emitted, cursor moved
//	  (next chunk of the table) ◀── emitted ─ closed

// Watermark values: "<prefix><chunk id>", and the re-backfill request
// (BackfillRequest) that `pgkafka backfill` (or an operator, with an
// INSERT) writes: "pgkafka-backfill:<schema>.<table>[,...]", or, with a
// condition, "pgkafka-backfill:" and a JSON object
// {"tables": ["<schema>.<table>", ...], "where": "<condition>"}.
const (
	lowMark      = "pgkafka-lw:"
	highMark     = "pgkafka-hw:"
	BackfillMark = "pgkafka-backfill:"
)

// chunkPlan is one chunk, planned by the backfill stage; its fields are
// set before it is sent and never written after.
type chunkPlan struct {
	id    string
	table pgsrc.TableRef
	after [][]byte // exclusive start; nil from the first key
	end   [][]byte // inclusive end; nil: the table's end (the last chunk)
	full  bool     // a keyed table: chunks follow this one
	ctid  string   // keyless: the ctid after which the chunk starts
	limit int      // rows at most

	// opened carries the codec of the chunk's rows, and the commits the
	// stream delivered before the low watermark, from the serializer, sent
	// when it sees the low watermark (capacity 1).
	opened chan chunkOpening
	// result carries the rows read from the backfill stage, sent before
	// it writes the high watermark (capacity 1).
	result chan *chunkResult
	// emitted is closed by the serializer once the chunk is emitted.
	emitted chan struct{}
}

func newChunkPlan(id string, table pgsrc.TableRef, limit int) *chunkPlan {
	return &chunkPlan{id: id, table: table, limit: limit,
		opened: make(chan chunkOpening, 1), result: make(chan *chunkResult, 1), emitted: make(chan struct{})}
}

// chunkOpening is what the serializer hands the backfill stage when a
// chunk's window opens: the codec of its rows, and the xids (modulo 2^32)
// of the last transactions whose commits the stream delivered before the
// low watermark, which the chunk's snapshot must see
// (pgsrc.Scanner.BeginConsistent). Neither side writes them afterwards.
type chunkOpening struct {
	tc        *tableCodec
	delivered []uint32
}

// chunkResult is a chunk as read, from the backfill stage to the
// serializer: the rows and their records (recs[i] is rows[i]'s, with a
// nil Value for a row its type cannot represent). Once the serializer has
// closed the plan's emitted, the backfill stage reuses its chunkBuffers
// (not enc nor hdrs, which the records it copied alias until Kafka has
// them).
type chunkResult struct {
	chunkBuffers
	enc  []byte
	hdrs []kgo.RecordHeader // the records' headers (kafka.headers)
	// more: chunks follow this one (a keyless table's chunk that read its
	// limit; a keyed table's plan says so itself).
	more bool
	// lastTID is the ctid of a keyless table's last row read.
	lastTID string
}

// chunkBuffers are the buffers of a chunk's rows that a table's reader
// reuses from one chunk to the next, so that a backfill does not make a
// chunk's worth of fresh memory for each chunk: the rows' text, their
// values in blocks, and the array of their records.
type chunkBuffers struct {
	rows   [][]pgsrc.Value // values alias slab
	slab   []byte
	recs   []kgo.Record // keys, values and header values alias enc
	blocks [][]pgsrc.Value
	// block is the values' block being filled, blocks[used-1].
	block []pgsrc.Value
	used  int
}

// values returns n values of the current block, or of the next one.
func (b *chunkBuffers) values(n int) []pgsrc.Value {
	if cap(b.block)-len(b.block) < n {
		if b.used < len(b.blocks) && cap(b.blocks[b.used]) >= n {
			b.block = b.blocks[b.used][:0]
		} else {
			b.block = make([]pgsrc.Value, 0, max(n, arenaValues))
			b.blocks = append(b.blocks[:b.used], b.block)
		}
		b.used++
	}
	m := len(b.block)
	b.block = b.block[:m+n]
	return b.block[m : m+n : m+n]
}

// reusable returns the buffers of an emitted chunk's result, emptied: its
// records are cleared, so that they no longer hold its encoded keys and
// values.
func (b *chunkBuffers) reusable() chunkBuffers {
	clear(b.recs)
	return chunkBuffers{rows: b.rows[:0], slab: b.slab[:0], recs: b.recs[:0], blocks: b.blocks}
}

// reuse returns b, its slab grown to hold slabBytes and its rows n.
func (b chunkBuffers) reuse(slabBytes, n int) chunkBuffers {
	b.slab = slices.Grow(b.slab[:0], slabBytes)
	b.rows = slices.Grow(b.rows[:0], n)
	b.block, b.used = nil, 0
	return b
}

// windowGate keeps a Kafka transaction from being held open for ever by
// the windows of tables backfilled in parallel. The producer commits only
// where no window is open; the serializer closes the gate when windows
// have stayed open longer than a transaction window, and new chunks wait
// at it (before their low watermark) until the open ones have closed.
type windowGate struct {
	mu     sync.Mutex
	closed chan struct{} // non-nil while closed
}

func newWindowGate() *windowGate { return &windowGate{} }

// close makes new chunks wait.
func (g *windowGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

// open lets waiting chunks go.
func (g *windowGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

// wait returns once the gate is open.
func (g *windowGate) wait(ctx context.Context) error {
	g.mu.Lock()
	c := g.closed
	g.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// BackfillRequest asks the capture to read tables again: the value
// written to the watermarks table after BackfillMark.
type BackfillRequest struct {
	// Tables are the tables to read, as <schema>.<table>.
	Tables []string `json:"tables"`
	// Where, when set, reads only the rows this SQL condition passes
	// (pgsrc.CheckCondition).
	Where string `json:"where,omitempty"`
	// Purge removes from the topic, at the backfill's end, with a delete
	// and a tombstone, the keys that neither the backfill read nor the
	// stream changed meanwhile (slotlost.go's rule): every key of the
	// topic, or, with PurgeKeys, those alone. A condition needs PurgeKeys
	// (keys it does not read cannot be told absent), and must pass every
	// one of them. `pgkafka verify --repair` writes such requests.
	Purge bool `json:"purge,omitempty"`
	// PurgeKeys are keys of the topic (Avro, without the registry's
	// framing, base64), of one table.
	PurgeKeys []string `json:"purgeKeys,omitempty"`
}

// Encode is the request's watermark value: without a condition or a
// purge, the comma-separated list every version of pgkafka reads;
// otherwise JSON.
func (r BackfillRequest) Encode() string {
	if r.Where == "" && !r.Purge {
		return BackfillMark + strings.Join(r.Tables, ",")
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // readable in the table: "a > b", not "a \u003e b"
	_ = enc.Encode(r)        // strings only: cannot fail
	return BackfillMark + strings.TrimSuffix(b.String(), "\n")
}

// ParseBackfillRequest reads a request's value after BackfillMark: a
// JSON object, or a comma-separated list of tables.
func ParseBackfillRequest(v string) (BackfillRequest, error) {
	if strings.HasPrefix(strings.TrimSpace(v), "{") {
		var r BackfillRequest
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return r, fmt.Errorf("re-backfill request %q: %w", v, err)
		}
		return r, nil
	}
	var r BackfillRequest
	for _, t := range strings.Split(v, ",") {
		r.Tables = append(r.Tables, strings.TrimSpace(t))
	}
	return r, nil
}

// checkPurge refuses a purge the capture cannot do right: one with a
// condition but no keys, or keys for several tables or not base64.
func (r BackfillRequest) checkPurge() error {
	switch {
	case len(r.PurgeKeys) > 0 && !r.Purge:
		return errors.New("purgeKeys without purge")
	case !r.Purge:
		return nil
	case r.Where != "" && len(r.PurgeKeys) == 0:
		return errors.New("a purge with a condition needs purgeKeys: the keys the condition does not read cannot be told absent")
	case len(r.PurgeKeys) > 0 && len(r.Tables) != 1:
		return fmt.Errorf("purgeKeys are one table's keys, not %d tables'", len(r.Tables))
	}
	for _, k := range r.PurgeKeys {
		if _, err := base64.StdEncoding.DecodeString(k); err != nil {
			return fmt.Errorf("purge key %q: %w", abbreviate(k, 40), err)
		}
	}
	return nil
}

// abbreviate cuts s to n bytes at most, saying how much it left out.
func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", strings.ToValidUTF8(s[:n], ""), len(s))
}
