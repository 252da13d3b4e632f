package schema

import (
	"reflect"
	"testing"

	"github.com/hamba/avro/v2"
)

// TestTxMetaRecords: BEGIN and END records and the transaction block read
// back, by hamba/avro's generic decoder, as Debezium writes them.
func TestTxMetaRecords(t *testing.T) {
	c, err := NewTxMetaCodec("shop.transaction")
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyAvro().(*avro.RecordSchema).FullName() != TxMetaKeyFullName || c.ValueAvro().(*avro.RecordSchema).FullName() != TxMetaValueFullName {
		t.Fatalf("names %s %s", c.KeyAvro().(*avro.RecordSchema).FullName(), c.ValueAvro().(*avro.RecordSchema).FullName())
	}
	c.SetIDs(7, 8)
	read := func(s avro.Schema, b []byte, id byte) map[string]any {
		t.Helper()
		if len(b) < 5 || b[0] != 0 || b[4] != id {
			t.Fatalf("framing % x", b)
		}
		var m map[string]any
		if err := avro.Unmarshal(s, b[5:], &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if got := read(c.KeyAvro(), c.AppendKey(nil, "771:23456"), 7); got["id"] != "771:23456" {
		t.Errorf("key %v", got)
	}
	begin := read(c.ValueAvro(), c.AppendBegin(nil, "771:23456", 1700000000123), 8)
	if want := map[string]any{"status": "BEGIN", "id": "771:23456", "event_count": nil, "data_collections": nil, "ts_ms": int64(1700000000123)}; !reflect.DeepEqual(begin, want) {
		t.Errorf("BEGIN %v, want %v", begin, want)
	}
	end := read(c.ValueAvro(), c.AppendEnd(nil, "771:23456", 1700000000123, 3, []TxCount{{"public.a", 2}, {"s2.b", 1}}), 8)
	wantCols := []any{
		map[string]any{"event.collection": map[string]any{"data_collection": "public.a", "event_count": int64(2)}},
		map[string]any{"event.collection": map[string]any{"data_collection": "s2.b", "event_count": int64(1)}},
	}
	if end["status"] != "END" || end["event_count"] != int64(3) {
		t.Errorf("END %v", end)
	}
	if cols := end["data_collections"]; !reflect.DeepEqual(cols, map[string]any{"array": wantCols}) {
		t.Errorf("data_collections %#v", cols)
	}
	empty := read(c.ValueAvro(), c.AppendEnd(nil, "1:2", 5, 0, nil), 8)
	if empty["ts_ms"] != int64(5) {
		t.Errorf("empty END %v", empty)
	}
	// The envelope's block.
	blk := appendTxBlock(nil, &TxBlock{ID: "771:23456", TotalOrder: 3, DataCollectionOrder: 2})
	s := avro.MustParse(`{"type":"record","name":"w","fields":[{"name":"transaction","type":` + transactionSchema + `}]}`)
	var m map[string]any
	if err := avro.Unmarshal(s, blk, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"event.block": map[string]any{"id": "771:23456", "total_order": int64(3), "data_collection_order": int64(2)}}
	if !reflect.DeepEqual(m["transaction"], want) {
		t.Errorf("block %#v, want %#v", m["transaction"], want)
	}
	if err := avro.Unmarshal(s, appendTxBlock(nil, nil), &m); err != nil || m["transaction"] != nil {
		t.Errorf("null block: %v %v", m, err)
	}
}
