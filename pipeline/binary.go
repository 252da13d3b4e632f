package pipeline

import (
	"context"
	"fmt"
	"strings"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Binary pgoutput (source.advanced.pgoutputBinary): the server sends each
// value in its type's send format. Values stay binary up to the codec
// (schema.Datum.Binary), which writes the same Avro bytes as from text,
// except key columns: the backfill compares keys, and the TOAST reconciler
// reads rows by key, in text form, so keyText renders them as text first.

// maxBinaryBlockers is how many columns a refusal or fallback names.
const maxBinaryBlockers = 5

// pgoutputBinary decides whether the stream is binary: off never; on
// always, or an error naming the columns that prevent it; auto when
// nothing prevents it. A column prevents it when its type is not
// schema.BinarySafe (every column of every published table, as the server
// sends them all) or, in a captured table's key, not schema.BinaryKeyText.
func (r *Runner) pgoutputBinary(ctx context.Context, catalog *pgsrc.Catalog, tables []pgsrc.Table) (bool, error) {
	mode := r.cfg.Source.Advanced.PgoutputBinary
	if mode == pgsrc.BinaryOff {
		return false, nil
	}
	if major := catalog.ServerMajor(); major < pgsrc.BinaryMajor {
		if mode == pgsrc.BinaryOn {
			return false, fmt.Errorf("source.advanced.pgoutputBinary: on needs PostgreSQL %d or later, the server is %d: set it to auto or off",
				pgsrc.BinaryMajor, major)
		}
		r.log.Info("pgoutput streams text: binary mode needs PostgreSQL 14 or later", "server_major", major)
		return false, nil
	}
	pub := r.cfg.Source.Advanced.PublicationName
	cols, err := catalog.PublishedColumns(ctx, pub)
	if err != nil {
		return false, err
	}
	var blockers []string
	for _, c := range cols {
		if !schema.BinarySafe(schemaType(c.Type, c.Typmod)) {
			blockers = append(blockers, fmt.Sprintf("column %q of %s (%s)", c.Column, c.Table, c.Type.Name))
		}
	}
	for i := range tables {
		t := &tables[i]
		for _, name := range t.KeyColumns {
			for j := range t.Columns {
				c := &t.Columns[j]
				if c.Name != name {
					continue
				}
				if typ, mod := c.Resolved(); !schema.BinaryKeyText(schemaType(typ, mod)) {
					blockers = append(blockers, fmt.Sprintf("key column %q of %s (%s)", c.Name, t.Ref(), typ.Name))
				}
			}
		}
	}
	blockers = append(blockers, r.cfg.hashedBinaryBlockers(tables)...) // columns.go
	for _, t := range r.cfg.outboxTables() {
		blockers = append(blockers, "outbox table "+t.String())
	}
	if len(blockers) == 0 {
		return true, nil
	}
	more := ""
	if len(blockers) > maxBinaryBlockers {
		more = fmt.Sprintf(" and %d more", len(blockers)-maxBinaryBlockers)
		blockers = blockers[:maxBinaryBlockers]
	}
	list := strings.Join(blockers, ", ") + more
	if mode == pgsrc.BinaryOn {
		return false, fmt.Errorf("source.advanced.pgoutputBinary: on, but pgkafka does not decode in binary %s (publication %q): set it to auto or off", list, pub)
	}
	r.log.Info("pgoutput streams text: binary mode is off for types pgkafka does not decode in binary", "columns", list)
	return false, nil
}

// keyText renders the binary key values of a batch's row changes as text,
// in its own slab (the changes' values alias the WAL slab, which cannot
// grow): the rest of the serializer sees text keys, as in text mode.
type keyText struct {
	// rels caches, per relation shape, its key columns and their types;
	// last is the last one looked up.
	rels map[*pgsrc.Relation]*relKeys
	last *relKeys
	slab []byte
}

// relKeys are a relation's key column indexes and types (nil: not captured).
type relKeys struct {
	rel   *pgsrc.Relation
	idx   []int
	types []schema.Type
}

// keyTextSlab is the size of the blocks keyText renders into.
const keyTextSlab = 64 << 10

// render rewrites the binary key values of cb's row changes as text.
func (k *keyText) render(ctx context.Context, c *codecs, cb *changeBatch) error {
	for i := range cb.changes {
		ch := &cb.changes[i]
		switch ch.Op {
		case pgsrc.OpInsert, pgsrc.OpUpdate, pgsrc.OpDelete:
		default:
			continue
		}
		rk, err := k.keys(ctx, c, ch.Rel)
		if err != nil {
			return err
		}
		if len(rk.idx) == 0 {
			continue
		}
		for _, tuple := range [2][]pgsrc.Value{ch.Old, ch.New} {
			for j, c := range rk.idx {
				if c >= len(tuple) || tuple[c].Kind != pgsrc.ValueBinary {
					continue
				}
				if cap(k.slab)-len(k.slab) < 64+len(tuple[c].Data)*2 {
					// Earlier values keep the block they alias.
					k.slab = make([]byte, 0, max(keyTextSlab, 64+len(tuple[c].Data)*2))
				}
				start := len(k.slab)
				k.slab, err = schema.AppendBinaryText(k.slab, rk.types[j], tuple[c].Data)
				if err != nil {
					return fmt.Errorf("key column %q of %s.%s at LSN %s: binary value %x: %w",
						ch.Rel.Columns[c].Name, ch.Rel.Namespace, ch.Rel.Name, ch.LSN, tuple[c].Data, err)
				}
				end := len(k.slab)
				tuple[c] = pgsrc.Value{Kind: pgsrc.ValueText, Data: k.slab[start:end:end]}
			}
		}
	}
	return nil
}

// keys returns the key columns of rel when its table is captured.
func (k *keyText) keys(ctx context.Context, c *codecs, rel *pgsrc.Relation) (*relKeys, error) {
	if k.last != nil && k.last.rel == rel {
		return k.last, nil
	}
	if rk := k.rels[rel]; rk != nil {
		k.last = rk
		return rk, nil
	}
	rk := &relKeys{rel: rel}
	ref := pgsrc.TableRef{Schema: rel.Namespace, Name: rel.Name}
	info, err := c.boundInfo(ctx, rel)
	if err != nil {
		return nil, err
	}
	if info != nil {
		for _, name := range info.KeyColumns {
			for i, rc := range rel.Columns {
				if rc.Name != name {
					continue
				}
				t, err := c.catalog.Type(ctx, rc.TypeOID)
				if err != nil {
					return nil, fmt.Errorf("type of key column %q of %s: %w", rc.Name, ref, err)
				}
				mod := rc.TypeMod
				var dmod int32
				if t, dmod = t.Resolved(); dmod != -1 {
					mod = dmod
				}
				st := schemaType(t, mod)
				if !schema.BinaryKeyText(st) {
					return nil, fmt.Errorf("key column %q of %s has type %s, whose binary form pgkafka does not compare: %w", rc.Name, ref, t.Name, schema.ErrNoBinary)
				}
				rk.idx = append(rk.idx, i)
				rk.types = append(rk.types, st)
			}
		}
	}
	if k.rels == nil {
		k.rels = make(map[*pgsrc.Relation]*relKeys)
	}
	k.rels[rel] = rk
	k.last = rk
	return rk, nil
}
