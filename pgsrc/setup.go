package pgsrc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Setup creates the prerequisites it may and explains the others: it
// verifies wal_level and the replication right, creates the watermarks
// table, creates the publication (publish_via_partition_root = true) of the
// tables and the watermarks table or adds the missing ones to it (never
// removing any), and creates the logical replication slot (pgoutput). A
// step the role may not take is a *PrerequisiteError carrying the SQL the
// owner must run. With no tables, the tables are the publication's, or when
// it does not exist every table the user can read. Running it again changes
// nothing. Several instances (other slots, the same publication and
// watermarks table) may run it at once: see lockedDDL.
func Setup(ctx context.Context, cfg *Config, tables []TableRef, log *slog.Logger) (err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wm := cfg.Watermarks()
	conn, err := Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := conn.Close(closeCtx); cerr != nil && err == nil {
			err = fmt.Errorf("closing connection to %s: %w", cfg.Address, cerr)
		}
	}()
	f, err := loadServerFacts(ctx, conn)
	if err != nil {
		return err
	}
	if f.walLevel != "logical" {
		return &PrerequisiteError{Check: "wal_level", Err: ErrWALLevel,
			Problem: fmt.Sprintf("wal_level is %q at %s; logical replication needs logical", f.walLevel, cfg.Address),
			Fix:     WALLevelFix()}
	}
	if !f.canReplicate() {
		return &PrerequisiteError{Check: "replication", Err: ErrNoReplication,
			Problem: fmt.Sprintf("role %q has neither the REPLICATION attribute nor membership in rds_replication (source.user)", f.user),
			Fix:     GrantReplicationSQL(f.user)}
	}
	// An invalidated or foreign slot fails before anything is created.
	slot := cfg.Advanced.SlotName
	sf, err := loadSlotFacts(ctx, conn, slot)
	if err != nil {
		return err
	}
	if sf.exists {
		if err := sf.problem(cfg); err != nil {
			return err
		}
	}

	// Other instances may set up the same watermarks table and publication
	// at this moment: each step reads what exists and creates the rest
	// under a lock they share (lockedDDL).
	if err := lockedDDL(ctx, conn, log, func() error {
		return setupWatermarks(ctx, conn, f, wm, log)
	}); err != nil {
		return err
	}
	if err := lockedDDL(ctx, conn, log, func() error {
		pf, err := loadPublicationFacts(ctx, conn, cfg.Advanced.PublicationName)
		if err != nil {
			return err
		}
		bound, err := boundTables(ctx, conn, tables, pf, wm)
		if err != nil {
			return err
		}
		if _, missing, err := lookupTables(ctx, conn, bound); err != nil {
			return err
		} else if len(missing) > 0 {
			return errors.Join(missing...)
		}
		return setupPublication(ctx, conn, f, pf, cfg.Advanced.PublicationName, append(bound, wm), log)
	}); err != nil {
		return err
	}
	if !sf.exists {
		return createSlot(ctx, cfg, f, log)
	}
	log.Info("replication slot exists", "slot", slot)
	return nil
}

// setupLockKey is the key of the advisory lock that serializes the DDL of
// Setup among pgkafka instances: "pgkafka" in ASCII. Advisory locks belong
// to a database, so instances on other databases never wait for each other.
const setupLockKey int64 = 0x70676b61666b61

// ddlAttempts bounds how many times lockedDDL runs a step.
const ddlAttempts = 3

// lockedDDL runs step, which reads the catalog and creates or alters what
// is missing, in a transaction holding the transaction-scoped advisory lock
// setupLockKey. PostgreSQL's CREATE TABLE IF NOT EXISTS, CREATE PUBLICATION
// and ALTER PUBLICATION ... ADD TABLE fail with unique_violation or
// duplicate_object when another session creates the same object at the
// same moment: the lock keeps pgkafka instances from doing so, each step
// seeing what the one before it committed. A session that does not take
// the lock (an older pgkafka, a script) may still collide: the step then
// runs again, reading the catalog anew, up to ddlAttempts times. step runs
// its statements on conn, which is in the transaction meanwhile.
func lockedDDL(ctx context.Context, conn *pgx.Conn, log *slog.Logger, step func() error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, setupLockKey); err != nil {
				return fmt.Errorf("waiting for the setup of other pgkafka instances (pg_advisory_xact_lock(%d)): %w", setupLockKey, err)
			}
			return step()
		})
		if err == nil || attempt == ddlAttempts || !isCode(err, codeUniqueViolation, codeDuplicateObject, codeDuplicateTable) {
			return err
		}
		log.Warn("another session created the same object at the same moment; reading the catalog again", "err", serverMessage(err))
	}
}

func setupWatermarks(ctx context.Context, conn *pgx.Conn, f *serverFacts, wm TableRef, log *slog.Logger) error {
	wf, err := loadWatermarksFacts(ctx, conn, wm)
	if err != nil {
		return err
	}
	if wf.exists {
		if !wf.writable {
			return &PrerequisiteError{Check: "watermarks_table", Err: ErrNotPermitted,
				Problem: fmt.Sprintf("role %q may not write the watermarks table %s (source.advanced.watermarksTable)", f.user, wm),
				Fix:     GrantWatermarksSQL(wm, f.user)}
		}
		return nil
	}
	fix := CreateWatermarksSQL(wm, f.user)
	if !wf.schemaExists {
		fix = fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s;\n%s", quoteIdent(wm.Schema), fix)
	}
	notPermitted := func(err error) error {
		return &PrerequisiteError{Check: "watermarks_table", Err: errors.Join(ErrNotPermitted, err),
			Problem: fmt.Sprintf("the watermarks table %s (source.advanced.watermarksTable) does not exist and role %q may not create it", wm, f.user),
			Fix:     fix}
	}
	if !wf.schemaExists || !wf.createInSchema {
		return notPermitted(nil)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+wm.Quoted()+` (slot TEXT PRIMARY KEY, watermark TEXT)`); err != nil {
		if isCode(err, codeInsufficientPrivilege, codeInvalidSchemaName) {
			return notPermitted(err)
		}
		return fmt.Errorf("creating watermarks table %s: %w", wm, err)
	}
	log.Info("created watermarks table", "table", wm.String())
	return nil
}

func setupPublication(ctx context.Context, conn *pgx.Conn, f *serverFacts, pf *publicationFacts, pub string, want []TableRef, log *slog.Logger) error {
	viaRoot := f.major >= 13
	if !pf.exists {
		sql := createPublicationSQL(pub, want, viaRoot)
		if _, err := conn.Exec(ctx, sql); err != nil {
			if isCode(err, codeInsufficientPrivilege) {
				return &PrerequisiteError{Check: "publication", Err: errors.Join(ErrNotPermitted, err),
					Problem: fmt.Sprintf("publication %q (source.advanced.publicationName) does not exist and role %q may not create it: %s", pub, f.user, serverMessage(err)),
					Fix:     sql}
			}
			return fmt.Errorf("creating publication %q: %w", pub, err)
		}
		for _, t := range want {
			log.Info("created publication", "publication", pub, "table", t.String())
		}
		return nil
	}
	if pf.allTables {
		return nil
	}
	notPermitted := func(err error, problem, fix string) error {
		if isCode(err, codeInsufficientPrivilege) {
			return &PrerequisiteError{Check: "publication", Err: errors.Join(ErrNotPermitted, err),
				Problem: fmt.Sprintf("%s and role %q may not alter it (owner %q): %s", problem, f.user, pf.owner, serverMessage(err)),
				Fix:     fix}
		}
		return fmt.Errorf("altering publication %q: %w", pub, err)
	}
	if !pf.viaRoot {
		sql := SetViaRootSQL(pub)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return notPermitted(err, fmt.Sprintf("publication %q has publish_via_partition_root off", pub), sql)
		}
		log.Info("set publish_via_partition_root on publication", "publication", pub)
		// Partitioned tables now show as themselves, not as their partitions.
		tables, _, err := PublicationTables(ctx, conn, pub)
		if err != nil {
			return err
		}
		pf.tables = tables
	}
	lacking := missingFrom(want, pf.tables)
	if len(lacking) == 0 {
		return nil
	}
	sql := AddTablesSQL(pub, lacking)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return notPermitted(err, fmt.Sprintf("publication %q lacks %s", pub, refList(lacking)), sql)
	}
	for _, t := range lacking {
		log.Info("added table to publication", "publication", pub, "table", t.String())
	}
	return nil
}

func createSlot(ctx context.Context, cfg *Config, f *serverFacts, log *slog.Logger) (err error) {
	slot := cfg.Advanced.SlotName
	if !validSlotName(slot) {
		return fmt.Errorf("source.advanced.slotName: %q is not a valid slot name", slot)
	}
	rc, err := ConnectReplication(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := rc.Close(closeCtx); cerr != nil && err == nil {
			err = fmt.Errorf("closing replication connection to %s: %w", cfg.Address, cerr)
		}
	}()
	res, err := pglogrepl.CreateReplicationSlot(ctx, rc, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	switch {
	case err == nil:
		log.Info("created replication slot", "slot", slot, "lsn", res.ConsistentPoint)
		return nil
	case isCode(err, codeDuplicateObject):
		// Created meanwhile by another instance: Setup's next run checks it.
		log.Info("replication slot exists", "slot", slot)
		return nil
	case isCode(err, codeConfigLimitExceeded):
		return &PrerequisiteError{Check: "slot", Err: err,
			Problem: fmt.Sprintf("cannot create replication slot %q: %s", slot, serverMessage(err)),
			Fix: fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d;\n-- then restart PostgreSQL, or drop an unused slot with SELECT pg_drop_replication_slot('<name>');",
				f.maxSlots+4)}
	case isCode(err, codeInsufficientPrivilege):
		return &PrerequisiteError{Check: "replication", Err: errors.Join(ErrNoReplication, err),
			Problem: fmt.Sprintf("role %q may not create replication slot %q: %s", f.user, slot, serverMessage(err)),
			Fix:     GrantReplicationSQL(f.user)}
	}
	return fmt.Errorf("creating replication slot %q: %w", slot, err)
}

// serverMessage is the server's message of err, or err's text.
func serverMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}
