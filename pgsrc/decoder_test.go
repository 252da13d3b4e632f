package pgsrc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// Hand-built pgoutput (protocol 1) messages.

func u16(b []byte, v uint16) []byte  { return binary.BigEndian.AppendUint16(b, v) }
func u32(b []byte, v uint32) []byte  { return binary.BigEndian.AppendUint32(b, v) }
func u64(b []byte, v uint64) []byte  { return binary.BigEndian.AppendUint64(b, v) }
func cstr(b []byte, s string) []byte { return append(append(b, s...), 0) }

type col struct {
	name string
	oid  uint32
	mod  int32
	key  bool
}

func relationMsg(id uint32, ns, name string, ident byte, cols ...col) []byte {
	b := u32([]byte{'R'}, id)
	b = cstr(cstr(b, ns), name)
	b = append(b, ident)
	b = u16(b, uint16(len(cols)))
	for _, c := range cols {
		flag := byte(0)
		if c.key {
			flag = 1
		}
		b = append(b, flag)
		b = cstr(b, c.name)
		b = u32(b, c.oid)
		b = u32(b, uint32(c.mod))
	}
	return b
}

// tuple encodes values; a nil value is NULL, "\x00u" is an unchanged TOAST.
func tuple(b []byte, vals ...any) []byte {
	b = u16(b, uint16(len(vals)))
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			b = append(b, 'n')
		case byte:
			b = append(b, v) // 'u'
		case string:
			b = append(b, 't')
			b = u32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

func beginMsg(final uint64, commitMicros int64, xid uint32) []byte {
	return u32(u64(u64([]byte{'B'}, final), uint64(commitMicros)), xid)
}

func commitMsg(commit, end uint64, commitMicros int64) []byte {
	return u64(u64(u64([]byte{'C', 0}, commit), end), uint64(commitMicros))
}

func first(vals []pgsrc.Value) string {
	if len(vals) == 0 {
		return ""
	}
	return texts(vals)[0]
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func decode(t *testing.T, d *pgsrc.Decoder, lsn pglogrepl.LSN, msg []byte) pgsrc.Change {
	t.Helper()
	var ch pgsrc.Change
	if _, err := d.Decode(lsn, msg, &ch, nil); err != nil {
		t.Fatalf("decoding %q: %v", msg[0], err)
	}
	return ch
}

func texts(vals []pgsrc.Value) []string {
	var out []string
	for _, v := range vals {
		switch v.Kind {
		case pgsrc.ValueNull:
			out = append(out, "NULL")
		case pgsrc.ValueUnchanged:
			out = append(out, "UNCHANGED")
		default:
			out = append(out, string(v.Data))
		}
	}
	return out
}

func TestDecodeTransaction(t *testing.T) {
	d := pgsrc.NewDecoder()
	ts := int64(789_000_000_123_456) // microseconds since 2000-01-01
	ch := decode(t, d, 100, beginMsg(0x500, ts, 42))
	if ch.Op != pgsrc.OpBegin || ch.Xid != 42 || !ch.CommitTime.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(ts)*time.Microsecond)) {
		t.Fatalf("begin: %+v", ch)
	}
	ch = decode(t, d, 101, relationMsg(16384, "public", "t", 'd', col{"id", 23, -1, true}, col{"v", 25, -1, false}, col{"n", 1700, 655366, false}))
	if ch.Op != pgsrc.OpRelation || ch.Rel.Name != "t" || ch.Rel.Version != 1 || len(ch.Rel.Columns) != 3 ||
		!ch.Rel.Columns[0].Key || ch.Rel.Columns[1].Key || ch.Rel.Columns[2].TypeMod != 655366 || ch.Rel.Columns[2].TypeOID != 1700 {
		t.Fatalf("relation: %+v", ch.Rel)
	}
	if got := ch.Rel.KeyColumns(); len(got) != 1 || got[0] != 0 {
		t.Fatalf("key columns %v", got)
	}
	rel := ch.Rel

	insert := append(u32([]byte{'I'}, 16384), 'N')
	insert = tuple(insert, "1", nil, "12.50")
	ch = decode(t, d, 102, insert)
	if ch.Op != pgsrc.OpInsert || ch.Rel != rel || ch.Xid != 42 || ch.LSN != 102 || ch.Old != nil {
		t.Fatalf("insert: %+v", ch)
	}
	if got := texts(ch.New); len(got) != 3 || got[0] != "1" || got[1] != "NULL" || got[2] != "12.50" {
		t.Fatalf("insert values %v", got)
	}

	// An update changing the key: old key tuple 'K', then the new tuple
	// with an unchanged TOAST value.
	update := append(u32([]byte{'U'}, 16384), 'K')
	update = tuple(update, "1", nil, nil)
	update = append(update, 'N')
	update = tuple(update, "2", byte('u'), "0.01")
	ch = decode(t, d, 103, update)
	if ch.Op != pgsrc.OpUpdate || ch.OldKind != 'K' || texts(ch.Old)[0] != "1" || texts(ch.New)[1] != "UNCHANGED" || texts(ch.New)[0] != "2" {
		t.Fatalf("update: %+v old %v new %v", ch, texts(ch.Old), texts(ch.New))
	}
	// An update without old tuple.
	update = append(u32([]byte{'U'}, 16384), 'N')
	update = tuple(update, "2", "x", "1")
	if ch = decode(t, d, 104, update); ch.Old != nil || ch.OldKind != 0 || texts(ch.New)[1] != "x" {
		t.Fatalf("plain update: %+v", ch)
	}
	del := append(u32([]byte{'D'}, 16384), 'O')
	del = tuple(del, "2", "x", "1")
	if ch = decode(t, d, 105, del); ch.Op != pgsrc.OpDelete || ch.OldKind != 'O' || texts(ch.Old)[1] != "x" || ch.New != nil {
		t.Fatalf("delete: %+v", ch)
	}
	trunc := u32(append(u32([]byte{'T'}, 1), 3), 16384)
	if ch = decode(t, d, 106, trunc); ch.Op != pgsrc.OpTruncate || len(ch.Truncated) != 1 || ch.Truncated[0] != rel || !ch.Cascade || !ch.RestartIdentity {
		t.Fatalf("truncate: %+v", ch)
	}
	ch = decode(t, d, 107, commitMsg(0x500, 0x528, ts))
	if ch.Op != pgsrc.OpCommit || ch.LSN != 0x500 || ch.EndLSN != 0x528 {
		t.Fatalf("commit: %+v", ch)
	}
	// A new Relation message for the same table is a new version; the old
	// one is left untouched for changes still in flight.
	ch = decode(t, d, 108, relationMsg(16384, "public", "t", 'f', col{"id", 23, -1, true}))
	if ch.Rel == rel || ch.Rel.Version != 2 || len(rel.Columns) != 3 || d.Relation(16384) != ch.Rel {
		t.Fatalf("second relation: %+v (first %+v)", ch.Rel, rel)
	}
	// Origin and type messages carry nothing to capture.
	for _, m := range [][]byte{{'O', 0, 0, 0, 0, 0, 0, 0, 1, 'x', 0}, cstr(cstr(u32([]byte{'Y'}, 99), "public"), "mood")} {
		if ch = decode(t, d, 109, m); ch.Op != 0 {
			t.Fatalf("message %q decoded as %v", m[0], ch.Op)
		}
	}
}

func messageMsg(transactional bool, lsn uint64, prefix string, content []byte) []byte {
	flags := byte(0)
	if transactional {
		flags = 1
	}
	b := cstr(u64([]byte{'M', flags}, lsn), prefix)
	return append(u32(b, uint32(len(content))), content...)
}

func TestDecodeMessage(t *testing.T) {
	d := pgsrc.NewDecoder()
	ts := int64(789_000_000_123_456)
	decode(t, d, 100, beginMsg(0x500, ts, 42))
	// A transactional message carries its transaction's xid and commit.
	msg := messageMsg(true, 0x4F0, "audit", []byte("who=alice"))
	ch := decode(t, d, 0x4F0, msg)
	if ch.Op != pgsrc.OpMessage || !ch.Transactional || ch.LSN != 0x4F0 || ch.Xid != 42 || ch.CommitLSN != 0x500 ||
		string(ch.Prefix) != "audit" || string(ch.Content) != "who=alice" || ch.CommitTime.IsZero() {
		t.Fatalf("transactional message: %+v", ch)
	}
	if &ch.Content[0] != &msg[len(msg)-9] || cap(ch.Content) != 9 || cap(ch.Prefix) != 5 {
		t.Fatalf("prefix and content are not capped subslices of the message")
	}
	decode(t, d, 0x500, commitMsg(0x500, 0x528, ts))
	// A non-transactional one, with binary content and an empty prefix,
	// belongs to no transaction: no xid, commit LSN or time.
	ch = decode(t, d, 0x600, messageMsg(false, 0x600, "", []byte{0, 0xFF, 1}))
	if ch.Op != pgsrc.OpMessage || ch.Transactional || ch.LSN != 0x600 || ch.Xid != 0 || ch.CommitLSN != 0 || !ch.CommitTime.IsZero() ||
		len(ch.Prefix) != 0 || !bytes.Equal(ch.Content, []byte{0, 0xFF, 1}) {
		t.Fatalf("non-transactional message: %+v", ch)
	}
	// Empty content.
	if ch = decode(t, d, 0x700, messageMsg(false, 0x700, "p", nil)); len(ch.Content) != 0 || string(ch.Prefix) != "p" {
		t.Fatalf("empty message: %+v", ch)
	}
}

func TestDecodeValuesAliasTheMessage(t *testing.T) {
	d := pgsrc.NewDecoder()
	decode(t, d, 1, relationMsg(1, "s", "t", 'd', col{"a", 25, -1, true}))
	msg := tuple(append(u32([]byte{'I'}, 1), 'N'), "hello")
	var ch pgsrc.Change
	vals, err := d.Decode(2, msg, &ch, make([]pgsrc.Value, 0, 4))
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 1 || &ch.New[0] != &vals[0] {
		t.Fatalf("values not appended to the given buffer")
	}
	if &ch.New[0].Data[0] != &msg[len(msg)-5] || cap(ch.New[0].Data) != 5 || cap(ch.New) != 1 {
		t.Fatalf("value data is not a capped subslice of the message")
	}
}

func TestDecodeErrors(t *testing.T) {
	d := pgsrc.NewDecoder()
	decode(t, d, 1, relationMsg(1, "s", "t", 'd', col{"a", 25, -1, true}, col{"b", 25, -1, false}))
	cases := map[string][]byte{
		"empty":                  {},
		"unknown type":           {'Z', 1, 2},
		"short begin":            {'B', 1},
		"short commit":           {'C', 0, 1},
		"unknown relation":       tuple(append(u32([]byte{'I'}, 2), 'N'), "x", "y"),
		"wrong column count":     tuple(append(u32([]byte{'I'}, 1), 'N'), "x"),
		"length past the end":    append(append(u32([]byte{'I'}, 1), 'N', 0, 2, 't'), 0, 0, 0, 50, 'x'),
		"bad tuple marker":       tuple(append(u32([]byte{'I'}, 1), 'X'), "x", "y"),
		"trailing bytes":         append(tuple(append(u32([]byte{'I'}, 1), 'N'), "x", "y"), 0),
		"bad value kind":         append(u32([]byte{'I'}, 1), 'N', 0, 1, 'q'),
		"delete without old":     tuple(append(u32([]byte{'D'}, 1), 'N'), "x", "y"),
		"update without new":     tuple(append(u32([]byte{'U'}, 1), 'K'), "x", nil),
		"truncate of unknown id": u32(append(u32([]byte{'T'}, 1), 0), 7),
		"bare message":           {'M'},
		"message without NUL":    append(u64([]byte{'M', 0}, 1), 'a', 'b'),
		"message without length": cstr(u64([]byte{'M', 0}, 1), "p"),
		"message content short":  append(u32(cstr(u64([]byte{'M', 0}, 1), "p"), 5), 'x'),
		"message content long":   append(u32(cstr(u64([]byte{'M', 1}, 1), "p"), 1), 'x', 'y'),
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			var ch pgsrc.Change
			if _, err := d.Decode(0x16B3748, msg, &ch, nil); err == nil {
				t.Fatalf("no error for %x", msg)
			} else if len(msg) > 0 && !bytes.Contains([]byte(err.Error()), []byte("0/16B3748")) {
				t.Fatalf("error does not name the LSN: %v", err)
			}
		})
	}
}

// FuzzDecode: no input makes the decoder panic, and a row it accepts
// re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(tuple(append(u32([]byte{'I'}, 1), 'N'), "1", nil))
	f.Add(append(tuple(append(u32([]byte{'U'}, 1), 'K'), "1", nil), tuple([]byte{'N'}, "2", byte('u'))...))
	f.Add(append(tuple(append(u32([]byte{'U'}, 1), 'O'), "1", "a"), tuple([]byte{'N'}, "2", byte('u'))...))
	f.Add(tuple(append(u32([]byte{'D'}, 1), 'K'), "1", nil))
	f.Add(relationMsg(1, "s", "t", 'd', col{"a", 23, -1, true}))
	f.Add(commitMsg(1, 2, 3))
	f.Add(beginMsg(1, 2, 3))
	f.Add(u32(append(u32([]byte{'T'}, 1), 0), 1))
	f.Add(messageMsg(true, 7, "prefix", []byte("content")))
	f.Add(messageMsg(false, 7, "", []byte{0, 1, 0}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		d := pgsrc.NewDecoder()
		var ch pgsrc.Change
		if _, err := d.Decode(1, relationMsg(1, "s", "t", 'd', col{"a", 23, -1, true}, col{"b", 25, -1, false}), &ch, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Decode(2, msg, &ch, nil); err != nil || len(msg) == 0 {
			return
		}
		if msg[0] == 'M' {
			if again := messageMsg(ch.Transactional, uint64(ch.LSN), string(ch.Prefix), ch.Content); !bytes.Equal(again[2:], msg[2:]) || again[1] != msg[1]&1 {
				t.Fatalf("decoded %x, re-encoded %x", msg, again)
			}
			return
		}
		if msg[0] != 'I' {
			return
		}
		again := append(u32([]byte{'I'}, 1), 'N')
		again = u16(again, uint16(len(ch.New)))
		for _, v := range ch.New {
			again = append(again, v.Kind)
			if v.Kind == pgsrc.ValueText || v.Kind == pgsrc.ValueBinary {
				again = u32(again, uint32(len(v.Data)))
				again = append(again, v.Data...)
			}
		}
		if !bytes.Equal(again, msg) {
			t.Fatalf("decoded %x, re-encoded %x", msg, again)
		}
	})
}

// TestReaderStreamsRealChanges reads a real slot: the Reader's messages,
// decoded, are the changes committed.
func TestReaderStreamsRealChanges(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{{Schema: "public", Name: "t"}}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := pgsrc.StartReader(ctx, &cfg, 0, pgsrc.ReaderOptions{}, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	db.Exec(t, `INSERT INTO t VALUES (1, 'a'), (2, NULL); UPDATE t SET v = 'b' WHERE id = 1; DELETE FROM t WHERE id = 2`)

	d := pgsrc.NewDecoder()
	var got []string
	var commit pgsrc.Change
	for commit.Op != pgsrc.OpCommit {
		msg, err := r.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Kind != pgsrc.MessageWAL {
			continue
		}
		var ch pgsrc.Change
		if _, err := d.Decode(msg.WALStart, bytes.Clone(msg.Data), &ch, nil); err != nil {
			t.Fatal(err)
		}
		switch ch.Op {
		case pgsrc.OpInsert, pgsrc.OpUpdate, pgsrc.OpDelete:
			got = append(got, ch.Op.String()+":"+first(ch.New)+first(ch.Old))
		case pgsrc.OpCommit:
			commit = ch
		}
	}
	if want := []string{"insert:1", "insert:2", "update:1", "delete:2"}; !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	if commit.EndLSN == 0 || commit.EndLSN < commit.LSN {
		t.Fatalf("commit LSNs %s %s", commit.LSN, commit.EndLSN)
	}
	// Confirming the commit moves the slot.
	if err := r.SendStatus(ctx, commit.EndLSN); err != nil {
		t.Fatal(err)
	}
	conn := db.Conn(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var confirmed pglogrepl.LSN
		if err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'flow_slot'`).Scan(&confirmed); err != nil {
			t.Fatal(err)
		}
		if confirmed >= commit.EndLSN {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("confirmed_flush_lsn %s, sent %s", confirmed, commit.EndLSN)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
