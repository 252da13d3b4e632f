package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pipeline"
)

// runDiscover prints, as YAML, a bindings: list of every table the user can
// capture, with its key and column types as comments.
func runDiscover(ctx context.Context, cfg pipeline.Config, w io.Writer) (err error) {
	catalog, err := pgsrc.OpenCatalog(ctx, &cfg.Source)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := catalog.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("closing the catalog connection: %w", cerr)
		}
	}()
	tables, err := catalog.Discover(ctx, nil)
	if err != nil {
		return err
	}
	wm := cfg.Source.Watermarks()
	var b strings.Builder
	fmt.Fprintf(&b, "# Tables that user %q can capture from database %q at %s.\n", cfg.Source.User, cfg.Source.Database, cfg.Source.Address)
	b.WriteString("bindings:\n")
	n := 0
	for _, t := range tables {
		if t.Ref() == wm {
			continue
		}
		n++
		fmt.Fprintf(&b, "  - resource: {namespace: %s, stream: %s, syncMode: incremental}\n", strconv.Quote(t.Schema), strconv.Quote(t.Name))
		switch {
		case len(t.PrimaryKey) > 0: // then KeyColumns is the primary key
			fmt.Fprintf(&b, "    # key: %s\n", strings.Join(t.KeyColumns, ", "))
		case len(t.KeyColumns) > 0:
			fmt.Fprintf(&b, "    # key (replica identity index): %s\n", strings.Join(t.KeyColumns, ", "))
		default:
			b.WriteString("    # no primary key: records get a null key\n")
		}
		if t.Kind == 'p' {
			b.WriteString("    # partitioned: captured under this root's name\n")
		}
		b.WriteString("    # columns:\n")
		for _, c := range t.Columns {
			null := ""
			if c.NotNull {
				null = " not null"
			}
			fmt.Fprintf(&b, "    #   %s: %s%s\n", c.Name, c.Type.Display, null)
		}
	}
	if n == 0 {
		b.WriteString("  [] # none: GRANT SELECT on the tables to capture to the user\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// runCheck prints each prerequisite as passed or failed, with the fix of
// each failure; an error (exit 1) when any failed.
func runCheck(ctx context.Context, cfg pipeline.Config, w io.Writer) error {
	results, err := pgsrc.Check(ctx, &cfg.Source, cfg.Tables())
	if err != nil {
		return err
	}
	failed := 0
	var b strings.Builder
	for _, r := range results {
		mark := "passed"
		if !r.OK {
			mark = "FAILED"
			failed++
		}
		fmt.Fprintf(&b, "%-6s  %s: %s\n", mark, r.Name, r.Detail)
		if !r.OK && r.Fix != "" {
			for _, line := range strings.Split(strings.TrimRight(r.Fix, "\n"), "\n") {
				fmt.Fprintf(&b, "          fix: %s\n", line)
			}
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d prerequisites failed: apply the fixes above (as a database owner or superuser), then run pgkafka check again", failed, len(results))
	}
	return nil
}

// runStatus prints the checkpoint, the slot and its lag, and each table's
// state.
func runStatus(ctx context.Context, cfg pipeline.Config, w io.Writer) error {
	st, err := pipeline.ReadStatus(ctx, cfg, time.Now())
	if err != nil {
		return err
	}
	var b strings.Builder
	if cp := st.Checkpoint; cp == nil {
		fmt.Fprintf(&b, "checkpoint  none yet in %s (key %q)\n", cfg.Kafka.OffsetsTopic, cfg.Name)
	} else {
		fmt.Fprintf(&b, "checkpoint  LSN %s, written %s", cp.LSN, cp.UpdatedAt.UTC().Format(time.RFC3339))
		if !cp.CommitTime.IsZero() {
			fmt.Fprintf(&b, ", last commit captured %s", cp.CommitTime.UTC().Format(time.RFC3339Nano))
		}
		b.WriteString("\n")
		if p := cp.Partial; p != nil {
			fmt.Fprintf(&b, "            inside transaction %d (commit LSN %s): %d changes in Kafka\n", p.Xid, p.CommitLSN, p.Changes)
		}
		if l := cp.SlotLost; l != nil {
			left := 0
			for _, t := range cp.Tables {
				if t.Purge && t.PurgeKeys == nil {
					left++ // (or a whole-table repair's)
				}
			}
			state := "re-backfill done"
			if left > 0 || l.Pending {
				state = fmt.Sprintf("re-backfill after a lost slot in progress: %d tables left, then their deleted rows' keys removed", left)
			}
			fmt.Fprintf(&b, "slot lost   %s at checkpoint LSN %s, found %s: %s\n", l.Slot, l.LSN, l.At.UTC().Format(time.RFC3339), state)
		}
	}
	if l := st.Lease; l.Active == nil {
		fmt.Fprintf(&b, "instance    none running (no session holds the lease of %q); %d standby\n", cfg.Name, l.Standbys)
	} else {
		fmt.Fprintf(&b, "instance    active: %s; %d standby\n", l.Active, l.Standbys)
	}
	if s := st.Slot; !s.Exists {
		fmt.Fprintf(&b, "slot        %s does not exist\n", s.Name)
	} else {
		active := "inactive"
		if s.Active {
			active = "active"
		}
		walStatus := s.WALStatus
		if walStatus == "" {
			walStatus = "n/a"
		}
		fmt.Fprintf(&b, "slot        %s: confirmed_flush_lsn %s, restart_lsn %s, wal_status %s, %s; server at %s\n",
			s.Name, s.ConfirmedFlush, s.Restart, walStatus, active, s.CurrentWAL)
		fmt.Fprintf(&b, "lag         %d bytes (%.1f s) behind the server; the slot holds %d bytes of WAL\n", st.LagBytes, st.LagSeconds, st.SlotLagBytes)
	}
	if len(st.Tables) > 0 {
		b.WriteString("tables\n")
		for _, t := range st.Tables {
			fmt.Fprintf(&b, "  %-40s %-12s topic %s", t.Table, t.State, t.Topic)
			if t.Cursor != "" {
				fmt.Fprintf(&b, ", read up to key %s", t.Cursor)
			}
			if t.Percent >= 0 {
				fmt.Fprintf(&b, " (about %.0f%% of ~%d rows)", t.Percent, t.Estimated)
			}
			switch {
			case t.State != offsets.StateBackfilling:
			case t.PurgeKeys > 0:
				fmt.Fprintf(&b, "; a repair: at its end, %d of its keys removed unless the table has them", t.PurgeKeys)
			case t.Purge:
				b.WriteString("; then the keys the table lacks removed from the topic")
			case t.Where != "":
				fmt.Fprintf(&b, "; only the rows where %s", abbreviate(t.Where, 80))
			}
			b.WriteString("\n")
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// runBackfill asks the capture to read tables again: it writes the request
// to the watermarks table, where the running capture (or the next one to
// start) sees it in the replication stream. With a condition (--where),
// only the rows it passes are read again; it is checked on each table
// first (EXPLAIN), and a condition refused is a usage error.
func runBackfill(ctx context.Context, cfg pipeline.Config, tables []string, where string, w io.Writer) error {
	bound := map[string]bool{}
	for _, t := range cfg.Tables() {
		bound[t.String()] = true
	}
	refs := make([]pgsrc.TableRef, len(tables))
	for i, t := range tables {
		ref, err := pgsrc.ParseTableRef(t)
		if err != nil {
			return &configError{fmt.Errorf("table %s", err)}
		}
		if len(bound) > 0 && !bound[t] {
			return &configError{fmt.Errorf("table %s is not among the bindings: add it to bindings to capture it", t)}
		}
		refs[i] = ref
	}
	if where != "" {
		if err := pgsrc.CheckCondition(where); err != nil {
			return &configError{fmt.Errorf("--where %q: %w", where, err)}
		}
		if err := checkWhere(ctx, cfg, refs, where); err != nil {
			return err
		}
	}
	marks, err := pgsrc.OpenWatermarks(ctx, &cfg.Source)
	if err != nil {
		return err
	}
	defer marks.Close(context.WithoutCancel(ctx))
	if err := marks.Write(ctx, pipeline.BackfillRequest{Tables: tables, Where: where}.Encode()); err != nil {
		return err
	}
	if where != "" {
		_, err = fmt.Fprintf(w, "backfill of %s where %s requested: the running capture (or the next to start) reads those rows again\n", strings.Join(tables, ", "), where)
		return err
	}
	_, err = fmt.Fprintf(w, "backfill of %s requested: the running capture (or the next to start) reads them again\n", strings.Join(tables, ", "))
	return err
}

// checkWhere checks the condition on each table with EXPLAIN: a
// condition PostgreSQL refuses is a usage error (exit 2) naming the
// table and the condition.
func checkWhere(ctx context.Context, cfg pipeline.Config, refs []pgsrc.TableRef, where string) error {
	sc, err := pgsrc.OpenScanner(ctx, &cfg.Source)
	if err != nil {
		return err
	}
	defer sc.Close(context.WithoutCancel(ctx))
	for _, ref := range refs {
		if err := sc.CheckWhere(ctx, ref, where); err != nil {
			var ce *pgsrc.ConditionError
			if errors.As(err, &ce) {
				return &configError{err}
			}
			return err
		}
	}
	return nil
}

// abbreviate cuts s to n bytes at most, saying so.
func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
