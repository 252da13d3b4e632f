package schema

import (
	"context"
	"encoding/binary"
	"fmt"
)

// DeleteOf returns the framed delete ('d') record of the row whose latest
// record is value (framed; a Debezium envelope or a flat row), written with
// value's own schema: the Debezium envelope's before is value's after
// image, its after null, op "d" and ts_ms nowMs; a flat row is value's
// with __op "d" and __deleted "true". It serves the removal of keys a
// table no longer has (pgkafka's re-backfill after a lost slot).
func (d *Decoder) DeleteOf(ctx context.Context, value []byte, nowMs int64) ([]byte, error) {
	if len(value) < 5 || value[0] != 0 {
		return nil, fmt.Errorf("not Confluent-framed Avro (%d bytes)", len(value))
	}
	id := int(binary.BigEndian.Uint32(value[1:5]))
	s, err := d.schema(ctx, id)
	if err != nil {
		return nil, d.red.Error(err)
	}
	var m map[string]any
	if err := decodeAPI.Unmarshal(s, value[5:], &m); err != nil {
		return nil, fmt.Errorf("decoding with schema %d: %w", id, err)
	}
	if _, ok := m["__deleted"]; ok {
		m["__op"], m["__deleted"] = wrapLike(m["__op"], "d", "string"), wrapLike(m["__deleted"], "true", "string")
	} else {
		if m["after"] == nil {
			return nil, fmt.Errorf("record of schema %d: no after image to delete", id)
		}
		m["before"], m["after"], m["op"] = m["after"], nil, "d"
		m["ts_ms"] = wrapLike(m["ts_ms"], nowMs, "long")
		if _, ok := m["transaction"]; ok {
			m["transaction"] = nil
		}
	}
	out, err := decodeAPI.Marshal(s, m)
	if err != nil {
		return nil, fmt.Errorf("encoding a delete with schema %d: %w", id, err)
	}
	return append(value[:5:5], out...), nil
}

// wrapLike gives v the generic union form old has ({"type": value}), if
// it has one; a null old (a union's null branch) takes branch.
func wrapLike(old, v any, branch string) any {
	switch w := old.(type) {
	case nil:
		return map[string]any{branch: v}
	case map[string]any:
		for k := range w {
			return map[string]any{k: v}
		}
	}
	return v
}
