package pipeline

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// A binding's key (bindings[].key, Debezium's message.key.columns) chooses
// the columns of its records' Kafka key, and so their partition, in place
// of the table's primary key (or replica identity index). The table's own
// key stays its rows' identity inside pgkafka: backfill chunks are ordered
// and cut by it, and the TOAST cache and the backfill's superseded rows
// go by it. A change of the chosen key's values is a delete of the old
// key (with its tombstone) and a create of the new one, as for a primary
// key.
//
// A delete carries only the columns of the table's replica identity, so
// the chosen columns must be among them, or the table REPLICA IDENTITY
// FULL: checked at start (keyError).

// messageKey returns the columns of ref's Kafka key: its binding's key,
// else the table's own key.
func (c *Config) messageKey(t *pgsrc.Table) []string {
	ref := t.Ref()
	for _, b := range c.Bindings {
		if b.Resource.Namespace == ref.Schema && b.Resource.Stream == ref.Name && len(b.Key) > 0 {
			return b.Key
		}
	}
	return t.KeyColumns
}

// checkKeys checks that the columns of each binding's key exist and that
// a delete carries them.
func (c *Config) checkKeys(tables []pgsrc.Table) error {
	for i := range tables {
		t := &tables[i]
		ref := t.Ref()
		for j, b := range c.Bindings {
			if b.Resource.Namespace != ref.Schema || b.Resource.Stream != ref.Name || len(b.Key) == 0 {
				continue
			}
			if err := keyError(t, b.Key, fmt.Sprintf("bindings[%d].key", j)); err != nil {
				return err
			}
		}
	}
	return nil
}

func keyError(t *pgsrc.Table, key []string, path string) error {
	ref := t.Ref()
	for _, name := range key {
		if !slices.ContainsFunc(t.Columns, func(c pgsrc.Column) bool { return c.Name == name && c.Sent() }) {
			return fmt.Errorf("%s: table %s has no column %q that its publication sends", path, ref, name)
		}
	}
	var identity []string
	switch t.ReplicaIdentity {
	case 'f':
		return nil
	case 'd':
		identity = t.PrimaryKey
	case 'i':
		identity = t.IdentityIndex
	}
	var missing []string
	for _, name := range key {
		if !slices.Contains(identity, name) {
			missing = append(missing, fmt.Sprintf("%q", name))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%s: a delete from %s carries only its replica identity (%s), without the key column(s) %s: "+
		"run ALTER TABLE %s REPLICA IDENTITY FULL, or choose key columns among the identity's",
		path, ref, identityText(t, identity), strings.Join(missing, ", "), ref.Quoted())
}

func identityText(t *pgsrc.Table, identity []string) string {
	switch {
	case t.ReplicaIdentity == 'n':
		return "REPLICA IDENTITY NOTHING: no column"
	case len(identity) == 0:
		return "no primary key: no column"
	case t.ReplicaIdentity == 'i':
		return "the replica identity index on " + strings.Join(identity, ", ")
	default:
		return "the primary key " + strings.Join(identity, ", ")
	}
}

// columnIndexes returns the positions of names among rel's columns.
func columnIndexes(rel *pgsrc.Relation, names []string) []int {
	var idx []int
	for _, name := range names {
		for i, rc := range rel.Columns {
			if rc.Name == name {
				idx = append(idx, i)
			}
		}
	}
	return idx
}
