package schema

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func messageCodec(t *testing.T) *MessageCodec {
	t.Helper()
	c, err := NewMessageCodec("shop.message", Source{Version: "0.1.0", Connector: "postgresql", Name: "shop", DB: "app"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMessageSchemas: the records carry Debezium's full names and fields.
func TestMessageSchemas(t *testing.T) {
	c := messageCodec(t)
	key := c.KeyAvro().(*avro.RecordSchema)
	if key.FullName() != MessageKeyFullName || len(key.Fields()) != 1 || key.Fields()[0].Name() != "prefix" {
		t.Fatalf("key schema %s", key)
	}
	val := c.ValueAvro().(*avro.RecordSchema)
	var names []string
	fields := map[string]*avro.Field{}
	for _, f := range val.Fields() {
		names = append(names, f.Name())
		fields[f.Name()] = f
	}
	if want := []string{"op", "ts_ms", "source", "transaction", "message"}; val.FullName() != MessageValueFullName || !reflect.DeepEqual(names, want) {
		t.Fatalf("value %s fields %v, want %v", val.FullName(), names, want)
	}
	if src := fields["source"].Type().(*avro.RecordSchema); src.FullName() != SourceFullName {
		t.Errorf("source %s", src.FullName())
	}
	msg := fields["message"].Type().(*avro.RecordSchema)
	var msgFields []string
	for _, f := range msg.Fields() {
		msgFields = append(msgFields, f.Name()+":"+string(f.Type().(*avro.UnionSchema).Types()[1].Type()))
	}
	if want := []string{"prefix:string", "content:bytes"}; msg.FullName() != MessageFullName || !reflect.DeepEqual(msgFields, want) {
		t.Errorf("message %s fields %v, want %v", msg.FullName(), msgFields, want)
	}
	if c.KeySubject() != "shop.message-key" || c.ValueSubject() != "shop.message-value" {
		t.Errorf("subjects %s %s", c.KeySubject(), c.ValueSubject())
	}
}

// TestMessageEncoding: what the codec writes, hamba/avro's generic decoder
// and the Apache reference implementation read back.
func TestMessageEncoding(t *testing.T) {
	c := messageCodec(t)
	c.SetIDs(7, 8)
	cases := []MessageEvent{
		{Prefix: []byte("audit"), Content: []byte("who=alice"), TsMs: 1700000000123, TxID: 742, LSN: 0x16B3748, NowMs: 1700000000456},
		{Prefix: []byte(""), Content: []byte{0, 0xFF, 0x80}, TsMs: 5, TxID: -1, LSN: 1, NowMs: 6},
		{Prefix: []byte("ü"), Content: nil, TsMs: 5, TxID: -1, LSN: -1, NowMs: 6},
	}
	var bodies [][]byte
	for _, ev := range cases {
		k := decode(t, c.KeyAvro(), c.AppendKey(nil, ev.Prefix), 7)
		if k["prefix"] != string(ev.Prefix) {
			t.Errorf("key %v, want prefix %q", k, ev.Prefix)
		}
		b := c.AppendValue([]byte("xx"), &ev)
		if string(b[:2]) != "xx" {
			t.Fatal("AppendValue overwrote dst")
		}
		b = b[2:]
		v := decode(t, c.ValueAvro(), b, 8)
		bodies = append(bodies, b[5:])
		if v["op"] != "m" || v["ts_ms"] != ev.NowMs || v["transaction"] != nil {
			t.Errorf("value %v", v)
		}
		msg := v["message"].(map[string]any)
		if msg["prefix"] != string(ev.Prefix) || !bytes.Equal(msg["content"].([]byte), ev.Content) {
			t.Errorf("message %v, want %q %x", msg, ev.Prefix, ev.Content)
		}
		src := v["source"].(map[string]any)
		want := map[string]any{"version": "0.1.0", "connector": "postgresql", "name": "shop", "ts_ms": ev.TsMs, "snapshot": "false",
			"db": "app", "sequence": nil, "schema": "", "table": "", "txId": optLong(ev.TxID), "lsn": optLong(ev.LSN), "xmin": nil}
		if !reflect.DeepEqual(src, want) {
			t.Errorf("source %v\nwant   %v", src, want)
		}
	}
	got := pythonAvro(t, c.ValueSchema(), bodies)
	if got[0][0] != "m" || got[0][4] != "{'prefix': 'audit', 'content': b'who=alice'}" || got[1][4] != `{'prefix': '', 'content': b'\x00\xff\x80'}` {
		t.Errorf("python3-avro read %q", got)
	}
}

// optLong is what hamba/avro decodes from a ["null","long"] written from v.
func optLong(v int64) any {
	if v < 0 {
		return nil
	}
	return v
}

func TestRegisterMessages(t *testing.T) {
	fake := srfake.New()
	t.Cleanup(fake.Close)
	reg, err := NewRegistry(RegistryConfig{URL: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	c := messageCodec(t)
	if err := reg.RegisterMessages(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	keySS, ok := fake.GetSchema("shop.message-key", 1)
	if !ok || keySS.Schema.Schema != c.KeySchema() {
		t.Fatalf("key subject: %v %+v", ok, keySS)
	}
	valSS, ok := fake.GetSchema("shop.message-value", 1)
	if !ok || valSS.Schema.Schema != c.ValueSchema() {
		t.Fatalf("value subject: %v %+v", ok, valSS)
	}
	unframe(t, c.AppendKey(nil, []byte("p")), keySS.ID)
	unframe(t, c.AppendValue(nil, &MessageEvent{TxID: -1, LSN: -1}), valSS.ID)
}

func BenchmarkMessageAppendValue(b *testing.B) {
	c, err := NewMessageCodec("shop.message", Source{Version: "0.1.0", Connector: "postgresql", Name: "shop", DB: "app"})
	if err != nil {
		b.Fatal(err)
	}
	ev := MessageEvent{Prefix: []byte("audit"), Content: bytes.Repeat([]byte("x"), 200), TsMs: 1, TxID: 2, LSN: 3, NowMs: 4}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.AppendKey(buf[:0], ev.Prefix)
		buf = c.AppendValue(buf, &ev)
	}
}
