package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Column policies (bindings[].columns; Debezium's column.exclude.list,
// column.mask.hash.v2.<algorithm>.with.salt.<salt>,
// column.mask.with.<N>.chars and column.truncate.to.<N>.chars) change what
// a binding's records carry of chosen columns. The codec applies them
// (schema.Policy), so every image it writes, backfilled or streamed,
// before or after, TOAST-filled or not, is changed alike: the values in
// pgkafka's memory (the TOAST cache, the backfill's rows) stay the
// database's, and never reach Kafka.
//
// The columns of the Kafka key take none: excluded, the key would lose a
// column; hashed, masked or truncated, the key (and so the partition) of
// distinct rows could become one. The table's own key may not be excluded
// either (its records would not say which row they are).

// ColumnPolicies is bindings[].columns.
type ColumnPolicies struct {
	// Exclude are columns left out of the records and the value schema.
	Exclude []string `koanf:"exclude"`
	// Hash maps a column to the algorithm (sha256 or sha512) whose salted
	// hex digest replaces its values (format.hashSalt is the salt).
	Hash map[string]string `koanf:"hash"`
	// Mask maps a column to the number of asterisks that replace its
	// values.
	Mask map[string]int `koanf:"mask"`
	// Truncate maps a string column to the number of characters its values
	// are cut to.
	Truncate map[string]int `koanf:"truncate"`
}

// any reports whether p names any column.
func (p *ColumnPolicies) any() bool {
	return len(p.Exclude)+len(p.Hash)+len(p.Mask)+len(p.Truncate) > 0
}

// policyPaths returns each column p names, with the key path naming it.
func (p *ColumnPolicies) policyPaths(key string) map[string][]string {
	paths := map[string][]string{}
	for i, col := range p.Exclude {
		paths[col] = append(paths[col], fmt.Sprintf("%s.exclude[%d]", key, i))
	}
	for _, m := range []struct {
		name string
		cols []string
	}{{"hash", sortedKeys(p.Hash)}, {"mask", sortedKeys(p.Mask)}, {"truncate", sortedKeys(p.Truncate)}} {
		for _, col := range m.cols {
			paths[col] = append(paths[col], key+"."+m.name+"."+col)
		}
	}
	return paths
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validateColumns checks each binding's column policies, without the
// catalog (checkColumns does with it).
func (c *Config) validateColumns(p *problems) {
	hashed := ""
	for i := range c.Bindings {
		cp := &c.Bindings[i].Columns
		key := fmt.Sprintf("bindings[%d].columns", i)
		for j, col := range cp.Exclude {
			if col == "" {
				p.add(fmt.Sprintf("%s.exclude[%d]", key, j), "empty: name a column")
			}
		}
		for _, col := range sortedKeys(cp.Hash) {
			if alg := cp.Hash[col]; !schema.ValidHash(alg) {
				p.add(key+".hash."+col, "unknown algorithm %q: use %s", alg, strings.Join(schema.HashAlgorithms, " or "))
			}
			if hashed == "" {
				hashed = key + ".hash." + col
			}
		}
		for _, col := range sortedKeys(cp.Mask) {
			if n := cp.Mask[col]; n < 1 {
				p.add(key+".mask."+col, "%d: want the number of asterisks, at least 1", n)
			}
		}
		for _, col := range sortedKeys(cp.Truncate) {
			if n := cp.Truncate[col]; n < 0 {
				p.add(key+".truncate."+col, "%d: want a number of characters, at least 0", n)
			}
		}
		paths := cp.policyPaths(key)
		for _, col := range sortedKeys(paths) {
			if ps := paths[col]; len(ps) > 1 {
				p.add(ps[1], "column %q already has a policy (%s): give it one", col, ps[0])
			}
		}
		for j, col := range c.Bindings[i].Key {
			if ps := paths[col]; len(ps) > 0 {
				p.add(ps[0], "column %q is in the binding's key (bindings[%d].key[%d]): key columns take no policy", col, i, j)
			}
		}
	}
	if hashed != "" && c.Format.HashSalt == "" {
		p.add("format.hashSalt", "required by %s: the secret salt of hashed columns (e.g. from PGKAFKA_FORMAT__HASHSALT)", hashed)
	}
}

// columnPolicies returns the column policies of ref's binding (nil: none).
func (c *Config) columnPolicies(ref pgsrc.TableRef) (*ColumnPolicies, int) {
	for i := range c.Bindings {
		b := &c.Bindings[i]
		if b.Resource.Namespace == ref.Schema && b.Resource.Stream == ref.Name && b.Columns.any() {
			return &b.Columns, i
		}
	}
	return nil, -1
}

// columnPolicy returns the policy of column name of ref.
func (c *Config) columnPolicy(ref pgsrc.TableRef, name string) schema.Policy {
	cp, _ := c.columnPolicies(ref)
	if cp == nil {
		return schema.Policy{}
	}
	switch {
	case slices.Contains(cp.Exclude, name):
		return schema.Policy{Exclude: true}
	case cp.Hash[name] != "":
		return schema.Policy{Hash: cp.Hash[name], Salt: []byte(c.Format.HashSalt)}
	case cp.Mask[name] > 0:
		return schema.Policy{Mask: cp.Mask[name]}
	}
	if n, ok := cp.Truncate[name]; ok {
		return schema.Policy{Truncate: n, TruncateSet: true}
	}
	return schema.Policy{}
}

// hashedColumn reports whether column name of ref is hashed: its text
// form is hashed, so the backfill reads it as text.
func (c *Config) hashedColumn(ref pgsrc.TableRef, name string) bool {
	cp, _ := c.columnPolicies(ref)
	return cp != nil && cp.Hash[name] != ""
}

// checkColumns checks the column policies against the tables: each names a
// column the publication sends, the keys take none, and truncated columns
// are strings.
func (c *Config) checkColumns(tables []pgsrc.Table) error {
	var p problems
	for i := range tables {
		t := &tables[i]
		ref := t.Ref()
		cp, b := c.columnPolicies(ref)
		if cp == nil {
			continue
		}
		key := fmt.Sprintf("bindings[%d].columns", b)
		paths := cp.policyPaths(key)
		msgKey := c.messageKey(t)
		for _, name := range sortedKeys(paths) {
			path := paths[name][0]
			j := slices.IndexFunc(t.Columns, func(col pgsrc.Column) bool { return col.Name == name && col.Sent() })
			if j < 0 {
				p.add(path, "table %s (bindings[%d]) has no column %q that its publication sends", ref, b, name)
				continue
			}
			col := &t.Columns[j]
			exclude := slices.Contains(cp.Exclude, name)
			switch {
			case slices.Contains(msgKey, name):
				p.add(path, "column %q of %s is in the records' Kafka key: key columns take no policy", name, ref)
			case exclude && slices.Contains(t.KeyColumns, name):
				p.add(path, "column %q of %s is in the table's key, which says which row a record is: it may not be excluded", name, ref)
			}
			if _, ok := cp.Truncate[name]; ok && !exclude {
				if typ, mod := col.Resolved(); !schema.Truncatable(schemaType(typ, mod)) {
					p.add(path, "column %q of %s is of type %s: truncate applies to text, varchar, bpchar, citext and name columns", name, ref, typ.Name)
				}
			}
		}
	}
	return errors.Join(p...)
}

// textHashed returns binary (binaryColumns) with the hashed columns of
// info read as text: a hash is of the value's text form.
func (c *Config) textHashed(info *pgsrc.Table, binary []bool) []bool {
	i := 0
	for j := range info.Columns {
		col := &info.Columns[j]
		if !col.Sent() {
			continue
		}
		if i < len(binary) && binary[i] && c.hashedColumn(info.Ref(), col.Name) {
			binary[i] = false
		}
		i++
	}
	return binary
}

// hashedBinaryBlockers lists the hashed columns whose binary pgoutput form
// pgkafka cannot print as the text it hashes (schema.BinaryKeyText): with
// them, the stream is text.
func (c *Config) hashedBinaryBlockers(tables []pgsrc.Table) []string {
	var blockers []string
	for i := range tables {
		t := &tables[i]
		for j := range t.Columns {
			col := &t.Columns[j]
			if !c.hashedColumn(t.Ref(), col.Name) {
				continue
			}
			if typ, mod := col.Resolved(); !schema.BinaryKeyText(schemaType(typ, mod)) {
				blockers = append(blockers, fmt.Sprintf("hashed column %q of %s (%s)", col.Name, t.Ref(), typ.Name))
			}
		}
	}
	return blockers
}
