package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Repair (`pgkafka verify --repair`) makes each table's topic equal to the
// table again through the running capture: it verifies, then writes for
// each table found different a re-backfill request (BackfillRequest) to
// the watermarks table, which the capture reads in its stream, in order
// with every change:
//
//   - the condition `(key columns) IN (...)` over every key found missing,
//     extra or different, so that the backfill reads those rows again as
//     'r' records, in chunks between watermarks like any backfill;
//   - a purge of the extra keys: at the backfill's end, those that the
//     backfill did not read (absent from the table in its chunk's
//     snapshot) and that no change of the stream gave back are removed
//     with a delete and a tombstone, by the rule of a re-backfill after a
//     lost slot (slotlost.go). A key the writer inserted again since
//     verify saw it extra is read, or changed by the stream: never
//     removed.
//
// Exactly once holds as for any backfill: the request's state is in the
// checkpoint of the Kafka transaction that read it, and a capture that
// stops during the repair does it again from its start.
//
// The keys are written as SQL literals from their Avro form; each one is
// read back through PostgreSQL and encoded again, and must give the same
// key bytes. A table whose keys cannot be written so (a type without a
// literal form here), or with more than RepairOptions.MaxKeys keys to
// repair, is read again in the whole, and every key of its topic the table
// lacks is removed.

// RepairOptions are the choices of `pgkafka verify --repair`.
type RepairOptions struct {
	VerifyOptions
	// MaxKeys is the most keys a table's repair names (default 1000):
	// more, and the whole table is read again. The condition and the
	// keys to remove live in the checkpoint until the repair is done.
	MaxKeys int
	// Wait bounds the wait for the capture to finish the repairs (default
	// 10 minutes).
	Wait time.Duration
	// Verified, when set, is given the reports of the first verify,
	// before any repair is requested.
	Verified func([]VerifyReport)
	// Report, when set, is told each step (a repair requested, done).
	Report func(format string, args ...any)
}

// defaultRepairKeys is RepairOptions.MaxKeys's default.
const defaultRepairKeys = 1000

// RepairReport is what a repair did: the reports of verify before and
// after, and the requests written.
type RepairReport struct {
	Before, After []VerifyReport
	Requests      []RepairRequest
	// Notes say what kept the repair from being seen done.
	Notes []string
}

// RepairRequest is one table's re-backfill request.
type RepairRequest struct {
	Table string
	// Keys is how many keys the condition names (0: the whole table),
	// Purge how many of them may be removed.
	Keys, Purge int
	// Whole tells why the whole table is read again ("" when it is not).
	Whole string
	// At is the server's WAL position after the request was written.
	At pglogrepl.LSN
	// Done: the capture's checkpoint shows the repair finished.
	Done bool
	Took time.Duration
}

// repairPlan is the request verify plans for a table found different.
type repairPlan struct {
	req   BackfillRequest
	keys  int
	whole string
}

// Repair verifies, asks the running capture to repair each table found
// different, waits for it, and verifies those tables again. Its errors
// never hold a password of cfg.
func Repair(ctx context.Context, cfg Config, opts RepairOptions, log *slog.Logger) (*RepairReport, error) {
	rep, err := repair(ctx, cfg, opts, log)
	return rep, cfg.Redactor().Error(cfg.Kafka.explainAuth(err))
}

func repair(ctx context.Context, cfg Config, opts RepairOptions, log *slog.Logger) (*RepairReport, error) {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = defaultRepairKeys
	}
	if opts.Wait <= 0 {
		opts.Wait = 10 * time.Minute
	}
	say := opts.Report
	if say == nil {
		say = func(string, ...any) {}
	}
	rep := &RepairReport{}
	var err error
	rep.Before, err = verify(ctx, cfg, opts.VerifyOptions, opts.MaxKeys, log)
	if err != nil {
		return rep, err
	}
	if opts.Verified != nil {
		opts.Verified(rep.Before)
	}
	var tables []string
	for i := range rep.Before {
		if b := &rep.Before[i]; b.repair != nil {
			tables = append(tables, b.Table)
		}
	}
	if len(tables) == 0 {
		return rep, nil
	}
	catalog, err := pgsrc.OpenCatalog(ctx, &cfg.Source)
	if err != nil {
		return rep, err
	}
	defer catalog.Close(context.WithoutCancel(ctx))
	lease, err := catalog.Lease(ctx, cfg.Name)
	if err != nil {
		return rep, err
	}
	marks, err := pgsrc.OpenWatermarks(ctx, &cfg.Source)
	if err != nil {
		return rep, err
	}
	defer marks.Close(context.WithoutCancel(ctx))
	for i := range rep.Before {
		b := &rep.Before[i]
		if b.repair == nil {
			continue
		}
		if err := marks.Write(ctx, b.repair.req.Encode()); err != nil {
			return rep, err
		}
		at, err := catalog.CurrentLSN(ctx)
		if err != nil {
			return rep, err
		}
		rr := RepairRequest{Table: b.Table, Keys: b.repair.keys, Purge: len(b.repair.req.PurgeKeys), Whole: b.repair.whole, At: at}
		if rr.Whole != "" {
			say("repair of %s: the whole table is read again, and the keys of %s it lacks are removed (%s); requested before LSN %s\n", rr.Table, b.Topic, rr.Whole, at)
		} else {
			say("repair of %s: %d keys read again, %d of them removed from %s unless the table has them by then; requested before LSN %s\n", rr.Table, rr.Keys, rr.Purge, b.Topic, at)
		}
		log.Info("repair requested", "table", rr.Table, "keys", rr.Keys, "purge_keys", rr.Purge, "whole_table", rr.Whole != "", "lsn", at.String())
		rep.Requests = append(rep.Requests, rr)
	}
	if lease.Active == nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("no capture of %q is running: the repairs are requested, and the capture does them when it starts; run verify again then", cfg.Name))
		return rep, nil
	}
	kopts, err := cfg.Kafka.clientOpts(discardLogger())
	if err != nil {
		return rep, err
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, opts.Wait)
	defer cancel()
	for left := len(rep.Requests); left > 0; {
		cp, err := offsets.Load(wctx, kopts, cfg.Kafka.OffsetsTopic, cfg.Name)
		if err != nil && wctx.Err() == nil {
			return rep, fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
		}
		for i := range rep.Requests {
			rr := &rep.Requests[i]
			if !rr.Done && repaired(cp, rr) {
				rr.Done, rr.Took = true, time.Since(start)
				left--
				say("repair of %s: done (%s)\n", rr.Table, rr.Took.Round(time.Millisecond))
			}
		}
		if left == 0 {
			break
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-t.C:
		case <-wctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("the capture did not finish the repairs within %s (see its log and `pgkafka status`): run verify again later", opts.Wait))
			return rep, nil
		}
	}
	vopts := opts.VerifyOptions
	vopts.Tables = tables
	rep.After, err = verify(ctx, cfg, vopts, 0, log)
	return rep, err
}

// repaired reports whether cp shows rr's repair finished: the checkpoint
// is past the request, so the capture has read it, and the table is no
// longer being backfilled.
func repaired(cp *offsets.Checkpoint, rr *RepairRequest) bool {
	if cp == nil || cp.Partial != nil || cp.LSN < rr.At {
		return false
	}
	st, ok := cp.Tables[rr.Table]
	return ok && st.State != offsets.StateBackfilling
}

// planRepair makes the request that repairs the keys found different:
// all of them (unframed Avro), extra those of them the table lacks.
func (v *verifier) planRepair(ctx context.Context, info *pgsrc.Table, codec *schema.Codec, all, extra []string) *repairPlan {
	ref := info.Ref().String()
	whole := func(why string) *repairPlan {
		return &repairPlan{req: BackfillRequest{Tables: []string{ref}, Purge: true}, whole: why}
	}
	if len(all) > v.maxKeys {
		return whole(fmt.Sprintf("%d keys to repair, more than %d", len(all), v.maxKeys))
	}
	cond, err := v.keyCondition(ctx, info, codec, all)
	if err != nil {
		v.log.Info("repair: the keys cannot be named in a condition; the whole table is read again", "table", ref, "err", err)
		return whole(err.Error())
	}
	p := &repairPlan{req: BackfillRequest{Tables: []string{ref}, Where: cond}, keys: len(all)}
	if len(extra) > 0 {
		p.req.Purge = true
		for _, k := range extra {
			p.req.PurgeKeys = append(p.req.PurgeKeys, base64.StdEncoding.EncodeToString([]byte(k)))
		}
	}
	return p
}

// keyCondition writes the condition `(k1, k2) IN ((v1, v2), ...)` that
// passes exactly the rows of keys (unframed Avro), and checks it: each
// tuple of literals, read back through PostgreSQL and encoded as a
// backfill encodes a key, gives the key it was made from.
func (v *verifier) keyCondition(ctx context.Context, info *pgsrc.Table, codec *schema.Codec, keys []string) (string, error) {
	cols := make([]*pgsrc.Column, len(info.KeyColumns))
	pos := make([]int, len(info.KeyColumns)) // among the sent columns
	sent := 0
	for i := range info.Columns {
		c := &info.Columns[i]
		if !c.Sent() {
			continue
		}
		if j := slices.Index(info.KeyColumns, c.Name); j >= 0 {
			cols[j], pos[j] = c, sent
		}
		sent++
	}
	for j, c := range cols {
		if c == nil {
			return "", fmt.Errorf("key column %s is not among the columns read", info.KeyColumns[j])
		}
	}
	tuples := make([]string, len(keys))
	for i, k := range keys {
		_, vals, err := codec.DecodeKey([]byte(k))
		if err != nil {
			return "", err
		}
		if len(vals) != len(cols) {
			return "", fmt.Errorf("a key of %d fields for %d key columns", len(vals), len(cols))
		}
		lits := make([]string, len(vals))
		for j, x := range vals {
			if lits[j], err = sqlLiteral(x, &cols[j].Type); err != nil {
				return "", fmt.Errorf("key column %s (%s): %w", cols[j].Name, cols[j].Type.Display, err)
			}
		}
		tuples[i] = strings.Join(lits, ", ")
	}

	// Read back: SELECT * FROM (VALUES (1, v1, v2), ...) ORDER BY 1.
	var q strings.Builder
	q.WriteString("SELECT * FROM (VALUES ")
	for i, t := range tuples {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "(%d, %s)", i, t)
	}
	q.WriteString(") AS k ORDER BY 1")
	row := make([]pgsrc.Value, sent)
	var after []schema.Datum
	var key []byte
	n := 0
	err := v.sc.Rows(ctx, info.Ref(), q.String(), func(vals []pgsrc.Value) error {
		for i := range row {
			row[i] = pgsrc.Value{Kind: pgsrc.ValueNull}
		}
		for j := range cols {
			row[pos[j]] = vals[1+j]
		}
		after = datums(after, row)
		var err error
		if key, err = codec.AppendKey(key[:0], after); err != nil {
			return err
		}
		if n >= len(keys) || !bytes.Equal(key[5:], []byte(keys[n])) {
			return fmt.Errorf("the literals (%s) do not stand for the key %s", tuples[min(n, len(keys)-1)], formatKey(codec, []byte(keys[min(n, len(keys)-1)])))
		}
		n++
		return nil
	})
	if err != nil {
		return "", err
	}
	if n != len(keys) {
		return "", fmt.Errorf("%d keys read back of %d", n, len(keys))
	}

	var c strings.Builder
	names := make([]string, len(cols))
	for j, col := range cols {
		names[j] = pgsrc.QuoteIdent(col.Name)
	}
	if len(cols) == 1 {
		c.WriteString(names[0])
	} else {
		c.WriteString("(" + strings.Join(names, ", ") + ")")
	}
	c.WriteString(" IN (")
	for i, t := range tuples {
		if i > 0 {
			c.WriteString(", ")
		}
		if len(cols) == 1 {
			c.WriteString(t)
		} else {
			c.WriteString("(" + t + ")")
		}
	}
	c.WriteString(")")
	if err := pgsrc.CheckCondition(c.String()); err != nil {
		return "", err
	}
	return c.String(), nil
}

// errNoLiteral is a key value with no SQL literal form here.
var errNoLiteral = errors.New("no SQL literal form for the value")

// sqlLiteral writes x, a key column's value as the Avro decoder gives it,
// as a literal of the column's type t: a string cast to the type, which
// PostgreSQL's input function reads.
func sqlLiteral(x any, t *pgsrc.Type) (string, error) {
	base, _ := t.Resolved()
	var s string
	switch x := unionValue(x).(type) {
	case nil:
		return "", errors.New("a null key value")
	case bool:
		s = strconv.FormatBool(x)
	case int:
		s = strconv.FormatInt(int64(x), 10)
	case int32:
		s = strconv.FormatInt(int64(x), 10)
	case int64:
		s = strconv.FormatInt(x, 10)
	case string:
		s = x
	case *big.Rat:
		s = ratString(x)
	case time.Time:
		switch base.Name {
		case "date":
			s = x.UTC().Format("2006-01-02")
		case "timestamptz":
			s = x.UTC().Format("2006-01-02 15:04:05.999999999") + "+00"
		case "timestamp":
			s = x.UTC().Format("2006-01-02 15:04:05.999999999")
		default:
			return "", fmt.Errorf("%w: a time for type %s", errNoLiteral, base.Name)
		}
	default:
		return "", fmt.Errorf("%w: %T", errNoLiteral, x)
	}
	return quoteLiteral(s) + "::" + t.Display, nil
}

// quoteLiteral quotes s as an SQL string constant, whatever
// standard_conforming_strings says: an escape string constant (E'...')
// where s has a backslash.
func quoteLiteral(s string) string {
	q := strings.ReplaceAll(s, "'", "''")
	if strings.Contains(s, `\`) {
		return "E'" + strings.ReplaceAll(q, `\`, `\\`) + "'"
	}
	return "'" + q + "'"
}

// ratString writes a decimal exactly: as many digits after the point as
// its denominator needs (a decimal's is a power of ten).
func ratString(r *big.Rat) string {
	d := 0
	for x := new(big.Rat).Set(r); !x.IsInt() && d < 1000; d++ {
		x.Mul(x, big.NewRat(10, 1))
	}
	return r.FloatString(d)
}
