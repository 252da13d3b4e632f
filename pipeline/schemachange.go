package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Schema changes mid-stream. pgoutput sends a new Relation message after an
// ALTER TABLE (and whenever its cache of the table was invalidated); the
// serializer's codecs (codecs.go) build a codec for the new shape, whose
// schemas the registry checks against the subjects' latest versions
// (schema.Registry.Register).
// Records encoded before the message keep their codec's schema ids.

// refresh returns the catalog's description of rel's table, read again
// when rel does not match info: a column info lacks, or whose type or
// typmod differs (ALTER COLUMN TYPE keeps the name), or a Relation message
// after the first of the session (a DDL that changes none of those, such as
// SET NOT NULL). The new description replaces the one the codecs hold;
// the one it was handed is left as is (the backfill stage reads it).
// renamed maps the new name of each column renamed since info to its
// former name, matched by attnum (which PostgreSQL never reuses).
func (c *codecs) refresh(ctx context.Context, rel *pgsrc.Relation, info *pgsrc.Table) (_ *pgsrc.Table, renamed map[string]string, _ error) {
	if !stale(rel, info) {
		return info, nil, nil
	}
	ref := info.Ref()
	fresh, err := c.catalog.Discover(ctx, []pgsrc.TableRef{ref})
	if (errors.Is(err, pgsrc.ErrTableNotFound) || err == nil && fresh[0].OID != info.OID) && info.OID != 0 {
		// Renamed since: the relation lives on under another name. Or
		// dropped (and maybe created again: another relation).
		now, exists, nerr := c.catalog.RelationName(ctx, info.OID)
		switch {
		case nerr != nil:
			return nil, nil, nerr
		case !exists && err == nil:
			return nil, nil, errTableRecreated
		case !exists:
			return nil, nil, errTableDropped
		case now != ref:
			return nil, nil, &TableRenamedError{From: ref, To: now, OID: info.OID, CommitLSN: c.shapeLSN, Topic: c.cfg.TopicFor(ref)}
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the catalog of %s after a change of its shape: %w", ref, err)
	}
	next := &fresh[0]
	if err := next.CheckPublished(c.cfg.Source.Advanced.PublicationName); err != nil {
		return nil, nil, fmt.Errorf("reading the catalog of %s after a change of its shape: %w", ref, err)
	}
	byPos := make(map[int]string, len(info.Columns))
	for _, c := range info.Columns {
		byPos[c.Position] = c.Name
	}
	for _, c := range next.Columns {
		if old, ok := byPos[c.Position]; ok && old != c.Name {
			if renamed == nil {
				renamed = make(map[string]string)
			}
			renamed[c.Name] = old
		}
	}
	if c.bound[ref] == info {
		c.bound[ref] = next
		c.byOID[next.OID] = next
	}
	c.log.Debug("catalog read again", "table", ref.String(), "relation_version", rel.Version, "renamed", len(renamed))
	return next, renamed, nil
}

// stale reports whether info may no longer describe rel.
func stale(rel *pgsrc.Relation, info *pgsrc.Table) bool {
	if rel.Version > 1 {
		return true
	}
	for _, rc := range rel.Columns {
		i := columnIndex(info, rc.Name)
		if i < 0 {
			return true
		}
		if c := &info.Columns[i]; c.Type.OID != rc.TypeOID || c.Typmod != rc.TypeMod {
			return true
		}
	}
	return false
}

func columnIndex(t *pgsrc.Table, name string) int {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return i
		}
	}
	return -1
}

// registerError adds to a registration failure the commit LSN of the
// transaction whose Relation message brought the new shape.
func (c *codecs) registerError(ref pgsrc.TableRef, err error) error {
	var inc *schema.IncompatibleError
	if errors.As(err, &inc) && c.shapeLSN != 0 {
		return fmt.Errorf("schema change of %s in the transaction committing at LSN %s: %w", ref, c.shapeLSN, err)
	}
	return fmt.Errorf("registering the schema of %s: %w", ref, err)
}

// warnForced reports the schemas registered although not BACKWARD
// compatible (schemaRegistry.onIncompatible: register).
func (c *codecs) warnForced(ref pgsrc.TableRef, forced []schema.Incompatibility) {
	for _, in := range forced {
		c.log.Warn("INCOMPATIBLE SCHEMA CHANGE registered: the subject's compatibility is now NONE, and consumers holding the new schema cannot read the records written before it (schemaRegistry.onIncompatible: register)",
			"table", ref.String(), "subject", in.Subject, "against_version", in.Version, "fields", in.Problems, "commit_lsn", c.shapeLSN.String())
	}
}
