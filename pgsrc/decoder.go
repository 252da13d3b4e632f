package pgsrc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// pgEpoch is PostgreSQL's timestamp origin, 2000-01-01 UTC.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// Decoder turns pgoutput (protocol version 1) messages into Changes. It keeps
// the relation cache; it is not safe for concurrent use.
//
// Row tuples are decoded straight from the message bytes: the Values of a
// Change alias the message, so they live as long as its buffer. Relation
// messages are parsed with pglogrepl.
type Decoder struct {
	rels       map[uint32]*Relation
	xid        uint32
	commitLSN  pglogrepl.LSN
	commitTime time.Time
}

// NewDecoder returns a Decoder with an empty relation cache.
func NewDecoder() *Decoder {
	return &Decoder{rels: make(map[uint32]*Relation)}
}

// Relation returns the cached relation with the given ID, or nil.
func (d *Decoder) Relation(id uint32) *Relation { return d.rels[id] }

// Decode decodes the message data found at lsn into ch. Values are appended
// to vals, whose grown slice is returned; ch.Old and ch.New are capped
// subslices of it. A message that carries nothing to capture (origin, type)
// leaves ch.Op zero.
func (d *Decoder) Decode(lsn pglogrepl.LSN, data []byte, ch *Change, vals []Value) ([]Value, error) {
	*ch = Change{LSN: lsn, Xid: d.xid, CommitLSN: d.commitLSN, CommitTime: d.commitTime}
	if len(data) == 0 {
		return vals, fmt.Errorf("empty pgoutput message at LSN %s", lsn)
	}
	var err error
	switch data[0] {
	case 'B':
		if len(data) < 21 {
			return vals, shortMessage("begin", lsn, len(data))
		}
		d.commitLSN = pglogrepl.LSN(binary.BigEndian.Uint64(data[1:9]))
		d.commitTime = pgTime(int64(binary.BigEndian.Uint64(data[9:17])))
		d.xid = binary.BigEndian.Uint32(data[17:21])
		*ch = Change{Op: OpBegin, LSN: lsn, Xid: d.xid, CommitLSN: d.commitLSN, CommitTime: d.commitTime}
	case 'C':
		if len(data) < 26 {
			return vals, shortMessage("commit", lsn, len(data))
		}
		ch.Op = OpCommit
		ch.LSN = pglogrepl.LSN(binary.BigEndian.Uint64(data[2:10]))
		ch.EndLSN = pglogrepl.LSN(binary.BigEndian.Uint64(data[10:18]))
		ch.CommitTime = pgTime(int64(binary.BigEndian.Uint64(data[18:26])))
	case 'R':
		err = d.decodeRelation(data, ch)
	case 'I', 'U', 'D':
		vals, err = d.decodeRow(data, ch, vals)
	case 'T':
		err = d.decodeTruncate(data, ch)
	case 'M':
		err = d.decodeMessage(data, ch)
	case 'O', 'Y':
		// Origin and type messages: nothing to capture.
	default:
		err = fmt.Errorf("unknown pgoutput message type %q", data[0])
	}
	if err != nil {
		return vals, fmt.Errorf("decoding %s at LSN %s: %w", msgName(data[0]), lsn, err)
	}
	return vals, nil
}

// parse runs pglogrepl's parser, which indexes without bounds checks: a
// malformed message is an error, not a panic.
func parse(data []byte) (m pglogrepl.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("malformed message of %d bytes: %v", len(data), r)
		}
	}()
	return pglogrepl.Parse(data)
}

func (d *Decoder) decodeRelation(data []byte, ch *Change) error {
	m, err := parse(data)
	if err != nil {
		return err
	}
	rm, ok := m.(*pglogrepl.RelationMessage)
	if !ok {
		return fmt.Errorf("unexpected %T", m)
	}
	rel := &Relation{
		ID:              rm.RelationID,
		Namespace:       rm.Namespace,
		Name:            rm.RelationName,
		ReplicaIdentity: rm.ReplicaIdentity,
		Columns:         make([]RelationColumn, len(rm.Columns)),
		Version:         1,
	}
	for i, c := range rm.Columns {
		rel.Columns[i] = RelationColumn{Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier, Key: c.Flags&1 != 0}
	}
	if old := d.rels[rel.ID]; old != nil {
		rel.Version = old.Version + 1
	}
	d.rels[rel.ID] = rel
	ch.Op, ch.Rel = OpRelation, rel
	return nil
}

// decodeTruncate decodes 'T', nrels int32, options int8, nrels relation
// IDs. (pglogrepl's parser allocates the claimed count before checking it.)
func (d *Decoder) decodeTruncate(data []byte, ch *Change) error {
	if len(data) < 6 {
		return fmt.Errorf("message of %d bytes is too short", len(data))
	}
	n := binary.BigEndian.Uint32(data[1:5])
	if uint64(len(data)) != 6+4*uint64(n) {
		return fmt.Errorf("claims %d relations in %d bytes", n, len(data))
	}
	ch.Op = OpTruncate
	ch.Cascade = data[5]&pglogrepl.TruncateOptionCascade != 0
	ch.RestartIdentity = data[5]&pglogrepl.TruncateOptionRestartIdentity != 0
	ch.Truncated = make([]*Relation, 0, n)
	for p := data[6:]; len(p) > 0; p = p[4:] {
		id := binary.BigEndian.Uint32(p)
		rel := d.rels[id]
		if rel == nil {
			return fmt.Errorf("truncate of relation %d before its relation message", id)
		}
		ch.Truncated = append(ch.Truncated, rel)
	}
	return nil
}

// decodeMessage decodes a logical decoding message of protocol version 1:
// 'M', flags int8 (bit 0: transactional), LSN int64, prefix (a NUL-ended
// string), content length int32, content. Prefix and Content alias data.
func (d *Decoder) decodeMessage(data []byte, ch *Change) error {
	if len(data) < 11 {
		return fmt.Errorf("message of %d bytes is too short", len(data))
	}
	transactional := data[1]&1 != 0
	lsn := pglogrepl.LSN(binary.BigEndian.Uint64(data[2:10]))
	p := data[10:]
	end := bytes.IndexByte(p, 0)
	if end < 0 {
		return fmt.Errorf("prefix without its terminating NUL")
	}
	prefix := p[:end:end]
	p = p[end+1:]
	if len(p) < 4 {
		return fmt.Errorf("truncated content length after prefix %q", prefix)
	}
	n := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(n) != uint64(len(p)) {
		return fmt.Errorf("message with prefix %q claims %d bytes of content, %d follow", prefix, n, len(p))
	}
	ch.Op, ch.LSN, ch.Transactional = OpMessage, lsn, transactional
	ch.Prefix, ch.Content = prefix, p[:n:n]
	if !transactional {
		// Sent when read, outside any transaction: those fields would be
		// the last transaction's.
		ch.Xid, ch.CommitLSN, ch.CommitTime = 0, 0, time.Time{}
	}
	return nil
}

func (d *Decoder) decodeRow(data []byte, ch *Change, vals []Value) ([]Value, error) {
	if len(data) < 6 {
		return vals, fmt.Errorf("message of %d bytes is too short", len(data))
	}
	id := binary.BigEndian.Uint32(data[1:5])
	rel := d.rels[id]
	if rel == nil {
		return vals, fmt.Errorf("change of relation %d before its relation message", id)
	}
	ch.Rel = rel
	p := data[5:]
	var err error
	switch data[0] {
	case 'I':
		ch.Op = OpInsert
		if p[0] != 'N' {
			return vals, fmt.Errorf("insert tuple marker %q, want 'N'", p[0])
		}
		ch.New, vals, p, err = decodeTuple(p[1:], vals)
	case 'U':
		ch.Op = OpUpdate
		if p[0] == 'K' || p[0] == 'O' {
			ch.OldKind = p[0]
			if ch.Old, vals, p, err = decodeTuple(p[1:], vals); err != nil {
				return vals, err
			}
			if len(p) == 0 {
				return vals, fmt.Errorf("update without new tuple")
			}
		}
		if p[0] != 'N' {
			return vals, fmt.Errorf("update tuple marker %q, want 'N'", p[0])
		}
		ch.New, vals, p, err = decodeTuple(p[1:], vals)
	case 'D':
		ch.Op = OpDelete
		if p[0] != 'K' && p[0] != 'O' {
			return vals, fmt.Errorf("delete tuple marker %q, want 'K' or 'O'", p[0])
		}
		ch.OldKind = p[0]
		ch.Old, vals, p, err = decodeTuple(p[1:], vals)
	}
	if err != nil {
		return vals, err
	}
	if len(p) != 0 {
		return vals, fmt.Errorf("%d trailing bytes", len(p))
	}
	for _, t := range [][]Value{ch.Old, ch.New} {
		if t != nil && len(t) != len(rel.Columns) {
			return vals, fmt.Errorf("tuple of %d columns for %s.%s of %d", len(t), rel.Namespace, rel.Name, len(rel.Columns))
		}
	}
	return vals, nil
}

// decodeTuple decodes a TupleData at the start of p into vals and returns
// the tuple (a capped subslice of vals), the grown vals and the rest of p.
func decodeTuple(p []byte, vals []Value) (tuple, grown []Value, rest []byte, err error) {
	if len(p) < 2 {
		return nil, vals, p, fmt.Errorf("truncated tuple header")
	}
	n := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	start := len(vals)
	for i := 0; i < n; i++ {
		if len(p) < 1 {
			return nil, vals, p, fmt.Errorf("truncated tuple at column %d", i)
		}
		kind := p[0]
		p = p[1:]
		switch kind {
		case ValueNull, ValueUnchanged:
			vals = append(vals, Value{Kind: kind})
		case ValueText, ValueBinary:
			if len(p) < 4 {
				return nil, vals, p, fmt.Errorf("truncated length of column %d", i)
			}
			l := binary.BigEndian.Uint32(p)
			p = p[4:]
			if uint64(l) > uint64(len(p)) {
				return nil, vals, p, fmt.Errorf("column %d claims %d bytes, %d left", i, l, len(p))
			}
			vals = append(vals, Value{Kind: kind, Data: p[:l:l]})
			p = p[l:]
		default:
			return nil, vals, p, fmt.Errorf("unknown value kind %q at column %d", kind, i)
		}
	}
	return vals[start:len(vals):len(vals)], vals, p, nil
}

func pgTime(micros int64) time.Time {
	return time.Unix(pgEpoch+micros/1e6, (micros%1e6)*1e3).UTC()
}

func shortMessage(name string, lsn pglogrepl.LSN, n int) error {
	return fmt.Errorf("%s message at LSN %s has %d bytes", name, lsn, n)
}

func msgName(b byte) string {
	switch b {
	case 'B':
		return "begin"
	case 'C':
		return "commit"
	case 'R':
		return "relation"
	case 'I':
		return "insert"
	case 'U':
		return "update"
	case 'D':
		return "delete"
	case 'T':
		return "truncate"
	case 'M':
		return "logical decoding message"
	}
	return fmt.Sprintf("message %q", b)
}
