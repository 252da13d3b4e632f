package pipeline

import (
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/schema"
)

// Kafka headers (kafka.headers) carry facts of a record that consumers
// and routers filter on without decoding its Avro value. The names are
// those Debezium's ExtractNewRecordState adds (add.headers), values are
// UTF-8 text:
//
//	op          __op            c, u, d, r, t or m
//	table       __table         <schema>.<table> (not on messages)
//	lsn         __lsn           the change's LSN, in decimal (not on backfilled rows)
//	txId        __txId          the PostgreSQL transaction id (not on backfilled rows
//	                            nor non-transactional messages)
//	commitTime  __source_ts_ms  the commit time (backfilled rows: the read time), in
//	                            milliseconds since 1970
//
// A delete's tombstone carries its delete's headers.
const (
	HeaderOp         = "op"
	HeaderTable      = "table"
	HeaderLSN        = "lsn"
	HeaderTxID       = "txId"
	HeaderCommitTime = "commitTime"
)

// headerSet is which headers records carry; the zero value, none.
type headerSet struct {
	op, table, lsn, txID, commitTime bool
}

func parseHeaders(names []string) (headerSet, error) {
	var h headerSet
	for i, n := range names {
		switch n {
		case HeaderOp:
			h.op = true
		case HeaderTable:
			h.table = true
		case HeaderLSN:
			h.lsn = true
		case HeaderTxID:
			h.txID = true
		case HeaderCommitTime:
			h.commitTime = true
		default:
			return h, fmt.Errorf("kafka.headers[%d]: %q is not one of %s, %s, %s, %s, %s", i, n, HeaderOp, HeaderTable, HeaderLSN, HeaderTxID, HeaderCommitTime)
		}
	}
	return h, nil
}

func (h headerSet) any() bool { return h.op || h.table || h.lsn || h.txID || h.commitTime }

// opValues are the values of __op, shared by every record.
var opValues = map[schema.Op][]byte{}

func init() {
	for _, op := range []schema.Op{schema.OpCreate, schema.OpUpdate, schema.OpDelete, schema.OpRead, schema.OpTruncate, schema.OpMessage} {
		opValues[op] = []byte(op.String())
	}
}

// recordHeaders builds the headers of records. The values it formats go
// into a slab, and the headers into a run, both of the batch the records
// belong to, and live as long as the batch.
type recordHeaders struct {
	set   headerSet
	table []byte // the value of __table
}

// appendTo appends the headers of a record of op to hs, their formatted
// values to slab, and returns both; lsn and txID < 0 and tsMs < 0 are
// absent.
func (r *recordHeaders) appendTo(hs []kgo.RecordHeader, slab []byte, op schema.Op, lsn, txID, tsMs int64) ([]kgo.RecordHeader, []byte) {
	h := r.set
	if h.op {
		hs = append(hs, kgo.RecordHeader{Key: "__op", Value: opValues[op]})
	}
	if h.table && r.table != nil {
		hs = append(hs, kgo.RecordHeader{Key: "__table", Value: r.table})
	}
	num := func(key string, v int64) {
		off := len(slab)
		slab = strconv.AppendInt(slab, v, 10)
		hs = append(hs, kgo.RecordHeader{Key: key, Value: slab[off:len(slab):len(slab)]})
	}
	if h.lsn && lsn >= 0 {
		num("__lsn", lsn)
	}
	if h.txID && txID >= 0 {
		num("__txId", txID)
	}
	if h.commitTime && tsMs >= 0 {
		num("__source_ts_ms", tsMs)
	}
	return hs, slab
}
