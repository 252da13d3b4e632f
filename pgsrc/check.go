package pgsrc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// CheckResult is the outcome of one prerequisite check.
type CheckResult struct {
	// Name is the prerequisite: "connection", "wal_level", "replication",
	// "watermarks_table", "publication", "slot", "wal_senders", or
	// "table <schema>.<name>".
	Name string
	OK   bool
	// Detail says what was found.
	Detail string
	// Fix is the SQL or setting that meets the prerequisite, when not OK.
	Fix string
}

// serverFacts are what the checks need to know of the server and the role.
type serverFacts struct {
	major          int
	version        string
	walLevel       string
	user           string
	superuser      bool
	replication    bool // rolreplication
	rdsReplication bool // member of rds_replication
	createInDB     bool
	maxSenders     int
	usedSenders    int
	maxSlots       int
	usedSlots      int
}

func (f *serverFacts) canReplicate() bool { return f.superuser || f.replication || f.rdsReplication }

func loadServerFacts(ctx context.Context, conn *pgx.Conn) (*serverFacts, error) {
	f := serverFacts{major: serverMajor(conn), version: conn.PgConn().ParameterStatus("server_version")}
	err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_user::text, r.rolsuper, r.rolreplication,
		CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication')
			THEN pg_has_role(current_user, 'rds_replication', 'MEMBER') ELSE false END,
		has_database_privilege(current_database(), 'CREATE'),
		current_setting('max_wal_senders')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int,
		current_setting('max_replication_slots')::int,
		(SELECT count(*) FROM pg_replication_slots)::int
	FROM pg_roles r WHERE r.rolname = current_user`).Scan(&f.walLevel, &f.user, &f.superuser, &f.replication,
		&f.rdsReplication, &f.createInDB, &f.maxSenders, &f.usedSenders, &f.maxSlots, &f.usedSlots)
	if err != nil {
		return nil, fmt.Errorf("reading server settings and role attributes: %w", err)
	}
	return &f, nil
}

// watermarksFacts describe the watermarks table and its schema.
type watermarksFacts struct {
	exists, writable   bool
	schemaExists       bool
	createInSchema     bool
	ownedByCurrentUser bool
}

func loadWatermarksFacts(ctx context.Context, conn *pgx.Conn, t TableRef) (*watermarksFacts, error) {
	var f watermarksFacts
	err := conn.QueryRow(ctx, `SELECT c.oid IS NOT NULL,
		COALESCE(has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')
			AND has_table_privilege(c.oid, 'UPDATE'), false),
		COALESCE(pg_has_role(c.relowner, 'USAGE'), false),
		n.oid IS NOT NULL, COALESCE(has_schema_privilege(n.oid, 'CREATE'), false)
	FROM (SELECT 1) d
	LEFT JOIN pg_namespace n ON n.nspname = $1
	LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
		t.Schema, t.Name).Scan(&f.exists, &f.writable, &f.ownedByCurrentUser, &f.schemaExists, &f.createInSchema)
	if err != nil {
		return nil, fmt.Errorf("looking up watermarks table %s: %w", t, err)
	}
	return &f, nil
}

// publicationFacts describe the publication.
type publicationFacts struct {
	exists    bool
	owned     bool // the current user may alter it
	owner     string
	allTables bool
	viaRoot   bool // true before PostgreSQL 13, where the option does not exist
	tables    []TableRef
}

func loadPublicationFacts(ctx context.Context, conn *pgx.Conn, name string) (*publicationFacts, error) {
	viaRoot := "true"
	if serverMajor(conn) >= 13 {
		viaRoot = "p.pubviaroot"
	}
	f := publicationFacts{}
	err := conn.QueryRow(ctx, `SELECT pg_has_role(p.pubowner, 'USAGE'), pg_get_userbyid(p.pubowner)::text, p.puballtables, `+viaRoot+`
		FROM pg_publication p WHERE p.pubname = $1`, name).Scan(&f.owned, &f.owner, &f.allTables, &f.viaRoot)
	if errors.Is(err, pgx.ErrNoRows) {
		return &f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up publication %q: %w", name, err)
	}
	f.exists = true
	if f.tables, _, err = PublicationTables(ctx, conn, name); err != nil {
		return nil, err
	}
	return &f, nil
}

// missingFrom returns the tables of want not in have.
func missingFrom(want, have []TableRef) []TableRef {
	var out []TableRef
	for _, t := range want {
		if !slices.Contains(have, t) && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// notOwned returns the tables of refs that exist and the current user does
// not own: only an owner may add a table to a publication.
func notOwned(ctx context.Context, conn *pgx.Conn, refs []TableRef) ([]TableRef, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	schemas, names := make([]string, len(refs)), make([]string, len(refs))
	for i, t := range refs {
		schemas[i], names[i] = t.Schema, t.Name
	}
	rows, err := conn.Query(ctx, `SELECT n.nspname::text, c.relname::text
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
		AND NOT pg_has_role(c.relowner, 'USAGE')
	ORDER BY 1, 2`, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("looking up table owners: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TableRef, error) {
		var t TableRef
		err := row.Scan(&t.Schema, &t.Name)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("looking up table owners: %w", err)
	}
	return out, nil
}

// slotFacts describe the replication slot.
type slotFacts struct {
	exists    bool
	plugin    string
	slotType  string
	database  string
	walStatus string // "" before PostgreSQL 13
}

func loadSlotFacts(ctx context.Context, conn *pgx.Conn, slot string) (*slotFacts, error) {
	walStatus := "''"
	if serverMajor(conn) >= 13 {
		walStatus = "COALESCE(wal_status, '')"
	}
	f := slotFacts{}
	err := conn.QueryRow(ctx, `SELECT COALESCE(plugin::text, ''), slot_type, COALESCE(database::text, ''), `+walStatus+`
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&f.plugin, &f.slotType, &f.database, &f.walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return &f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up replication slot %q: %w", slot, err)
	}
	f.exists = true
	return &f, nil
}

// problem returns what is wrong with an existing slot for cfg, if anything.
func (f *slotFacts) problem(cfg *Config) error {
	slot := cfg.Advanced.SlotName
	switch {
	case f.slotType != "logical" || f.plugin != "pgoutput" || f.database != cfg.Database:
		return fmt.Errorf("replication slot %q is a %s slot with plugin %q in database %q, not a logical pgoutput slot in %q: %w; set another source.advanced.slotName or drop it with %s",
			slot, f.slotType, f.plugin, f.database, cfg.Database, ErrSlotMismatch, DropSlotSQL(slot))
	case f.walStatus == "lost":
		return fmt.Errorf("replication slot %q: %w: PostgreSQL removed WAL it still needed (wal_status lost, see max_slot_wal_keep_size); drop it with %s and run again: a new slot is created and every table is backfilled anew",
			slot, ErrSlotInvalidated, DropSlotSQL(slot))
	}
	return nil
}

// boundTables is tables, or when empty the publication's tables, or when
// the publication does not exist every table the user can read; the
// watermarks table is never one of them.
func boundTables(ctx context.Context, conn *pgx.Conn, tables []TableRef, pub *publicationFacts, wm TableRef) ([]TableRef, error) {
	if len(tables) == 0 {
		if pub.exists {
			tables = pub.tables
		} else {
			all, err := Discover(ctx, conn, nil)
			if err != nil {
				return nil, err
			}
			for _, t := range all {
				tables = append(tables, t.Ref())
			}
		}
	}
	return slices.DeleteFunc(slices.Clone(tables), func(t TableRef) bool { return t == wm }), nil
}

// Check runs every prerequisite check, read-only, and returns one result
// each. It returns an error only when it cannot connect or a catalog query
// fails. With no tables, the tables checked are the publication's, or when
// it does not exist every table the user can read.
func Check(ctx context.Context, cfg *Config, tables []TableRef) (_ []CheckResult, err error) {
	wm := cfg.Watermarks()
	conn, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	via := ""
	if t := &cfg.NetworkTunnel.SSHForwarding; t.Enabled() {
		via = " through the SSH tunnel " + tunnelEndpoint(t)
	}
	out := []CheckResult{{Name: "connection", OK: true,
		Detail: fmt.Sprintf("connected to PostgreSQL %s at %s%s, database %q, as %q", f.version, cfg.Address, via, cfg.Database, f.user)}}
	add := func(name string, ok bool, detail, fix string) {
		if ok {
			fix = ""
		}
		out = append(out, CheckResult{Name: name, OK: ok, Detail: detail, Fix: fix})
	}

	add("wal_level", f.walLevel == "logical", "wal_level is "+f.walLevel, WALLevelFix())

	switch {
	case f.superuser:
		add("replication", true, fmt.Sprintf("role %q is a superuser", f.user), "")
	case f.replication:
		add("replication", true, fmt.Sprintf("role %q has REPLICATION", f.user), "")
	case f.rdsReplication:
		add("replication", true, fmt.Sprintf("role %q is a member of rds_replication", f.user), "")
	default:
		add("replication", false, fmt.Sprintf("role %q has neither REPLICATION nor rds_replication", f.user), GrantReplicationSQL(f.user))
	}

	wf, err := loadWatermarksFacts(ctx, conn, wm)
	if err != nil {
		return nil, err
	}
	switch {
	case wf.exists && wf.writable:
		add("watermarks_table", true, fmt.Sprintf("%s exists and %q may write it", wm, f.user), "")
	case wf.exists:
		add("watermarks_table", false, fmt.Sprintf("%s exists but %q may not write it", wm, f.user), GrantWatermarksSQL(wm, f.user))
	case wf.createInSchema:
		add("watermarks_table", true, fmt.Sprintf("%s does not exist; setup will create it", wm), "")
	case !wf.schemaExists:
		add("watermarks_table", false, fmt.Sprintf("%s does not exist, nor does schema %q", wm, wm.Schema),
			fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s;\n%s", quoteIdent(wm.Schema), CreateWatermarksSQL(wm, f.user)))
	default:
		add("watermarks_table", false, fmt.Sprintf("%s does not exist and %q may not create tables in schema %q", wm, f.user, wm.Schema),
			CreateWatermarksSQL(wm, f.user))
	}

	pub := cfg.Advanced.PublicationName
	pf, err := loadPublicationFacts(ctx, conn, pub)
	if err != nil {
		return nil, err
	}
	bound, err := boundTables(ctx, conn, tables, pf, wm)
	if err != nil {
		return nil, err
	}
	want := append(slices.Clone(bound), wm)
	found, missing, err := lookupTables(ctx, conn, bound)
	if err != nil {
		return nil, err
	}
	if err := checkPublication(ctx, conn, f, pf, pub, want, wf, add); err != nil {
		return nil, err
	}

	sf, err := loadSlotFacts(ctx, conn, cfg.Advanced.SlotName)
	if err != nil {
		return nil, err
	}
	slot := cfg.Advanced.SlotName
	switch {
	case sf.exists:
		if perr := sf.problem(cfg); perr != nil {
			fix := DropSlotSQL(slot)
			if errors.Is(perr, ErrSlotMismatch) {
				fix = "-- set another source.advanced.slotName, or:\n" + fix
			}
			add("slot", false, perr.Error(), fix)
		} else {
			add("slot", true, fmt.Sprintf("slot %q exists (pgoutput, database %q)", slot, sf.database), "")
		}
	case !f.canReplicate():
		add("slot", false, fmt.Sprintf("slot %q does not exist and %q may not create it without REPLICATION", slot, f.user), GrantReplicationSQL(f.user))
	case f.usedSlots >= f.maxSlots:
		add("slot", false, fmt.Sprintf("slot %q does not exist and all %d replication slots (max_replication_slots) are in use", slot, f.maxSlots),
			fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d;\n-- then restart PostgreSQL, or drop an unused slot with SELECT pg_drop_replication_slot('<name>');", f.maxSlots+4))
	default:
		add("slot", true, fmt.Sprintf("slot %q does not exist; setup will create it", slot), "")
	}
	add("wal_senders", f.usedSenders < f.maxSenders,
		fmt.Sprintf("%d of %d WAL senders (max_wal_senders) in use", f.usedSenders, f.maxSenders),
		fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d;\n-- then restart PostgreSQL", f.maxSenders+4))

	if err := ApplyPublication(ctx, conn, pub, found); err != nil {
		return nil, err
	}
	for _, t := range found {
		var detail string
		switch {
		case len(t.PrimaryKey) > 0:
			detail = fmt.Sprintf("readable, %d columns, primary key (%s)", len(t.Columns), strings.Join(t.PrimaryKey, ", "))
		case len(t.KeyColumns) > 0:
			detail = fmt.Sprintf("readable, %d columns, no primary key, keyed by its replica identity index (%s)", len(t.Columns), strings.Join(t.KeyColumns, ", "))
		default:
			detail = fmt.Sprintf("readable, %d columns, no primary key: records get a null key", len(t.Columns))
		}
		if slices.ContainsFunc(t.Columns, func(c Column) bool { return c.Unpublished }) {
			detail += fmt.Sprintf("; publication %q publishes only the columns (%s)", pub, strings.Join(t.publishedColumns(), ", "))
		}
		if t.RowFilter != "" {
			detail += fmt.Sprintf("; publication %q publishes only the rows where %s", pub, t.RowFilter)
		}
		if advice := indexAdvice(ctx, conn, f.user, &t, cfg.Advanced.BackfillChunkSize); advice != "" {
			detail += "; its backfill's chunk queries would sort the rest of the table each time (a text key in a collation other than C), which this index avoids: " + advice
		}
		var uk *UnpublishedKeyError
		if errors.As(t.CheckPublished(pub), &uk) {
			add("table "+t.Ref().String(), false, detail+"; its column list leaves out the key column(s) "+strings.Join(uk.Missing, ", "), uk.Fix())
			continue
		}
		add("table "+t.Ref().String(), true, detail, "")
	}
	for _, m := range missing {
		var nf *TableNotFoundError
		if errors.As(m, &nf) {
			add("table "+nf.Table.String(), false, "does not exist or is not readable by "+quoteIdent(f.user), GrantSelectSQL(nf.Table, f.user))
		} else {
			add("table", false, m.Error(), "-- change the bindings")
		}
	}
	return out, nil
}

// indexAdvice is Scanner.IndexAdvice for a keyed table, "" when there is
// none or it cannot be had (it is advice: check goes on).
func indexAdvice(ctx context.Context, conn *pgx.Conn, user string, t *Table, chunkSize int) string {
	if len(t.KeyColumns) == 0 {
		return ""
	}
	s := &Scanner{conn: conn, user: user}
	o, err := s.KeyOrder(ctx, t, t.KeyColumns)
	if err != nil {
		return ""
	}
	advice, err := s.IndexAdvice(ctx, t, o, chunkSize)
	if err != nil {
		return ""
	}
	return advice
}

func checkPublication(ctx context.Context, conn *pgx.Conn, f *serverFacts, pf *publicationFacts, pub string, want []TableRef,
	wf *watermarksFacts, add func(name string, ok bool, detail, fix string)) error {
	// Tables the user must own to add them; the watermarks table is owned
	// by the user when setup creates it.
	var existing []TableRef
	for _, t := range want {
		if t != want[len(want)-1] || wf.exists {
			existing = append(existing, t)
		}
	}
	switch {
	case !pf.exists:
		foreign, err := notOwned(ctx, conn, existing)
		if err != nil {
			return err
		}
		switch {
		case !f.createInDB:
			add("publication", false, fmt.Sprintf("publication %q does not exist and %q may not create it (no CREATE on the database)", pub, f.user),
				createPublicationSQL(pub, want, f.major >= 13))
		case len(foreign) > 0:
			add("publication", false, fmt.Sprintf("publication %q does not exist and %q may not create it: it does not own %s", pub, f.user, refList(foreign)),
				createPublicationSQL(pub, want, f.major >= 13))
		default:
			add("publication", true, fmt.Sprintf("publication %q does not exist; setup will create it", pub), "")
		}
	case pf.allTables:
		add("publication", true, fmt.Sprintf("publication %q publishes all tables", pub), "")
	default:
		lacking := missingFrom(want, pf.tables)
		var fixes []string
		if !pf.viaRoot {
			fixes = append(fixes, SetViaRootSQL(pub))
		}
		if len(lacking) > 0 {
			fixes = append(fixes, AddTablesSQL(pub, lacking))
		}
		if len(fixes) == 0 {
			add("publication", true, fmt.Sprintf("publication %q holds every table", pub), "")
			return nil
		}
		detail := fmt.Sprintf("publication %q", pub)
		if len(lacking) > 0 {
			detail += " lacks " + refList(lacking)
		}
		if !pf.viaRoot {
			detail += " has publish_via_partition_root off"
		}
		foreign, err := notOwned(ctx, conn, lacking)
		if err != nil {
			return err
		}
		if pf.owned && len(foreign) == 0 {
			add("publication", true, detail+"; setup will fix it", "")
		} else {
			add("publication", false, fmt.Sprintf("%s, and %q may not alter it (owner %q)", detail, f.user, pf.owner), strings.Join(fixes, "\n"))
		}
	}
	return nil
}

func refList(refs []TableRef) string {
	s := make([]string, len(refs))
	for i, r := range refs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}
