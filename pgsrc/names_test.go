package pgsrc_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// Names PostgreSQL takes only quoted: upper case, spaces, double and
// single quotes, a comma (pgoutput's list separator). And a slot name that
// is a keyword of the replication protocol's grammar, which the server
// takes unquoted (slot names are [a-z0-9_] only, so quoting would change
// nothing else).
const oddSlot = "logical"

var (
	oddWatermarks = pgsrc.TableRef{Schema: `Ops "Team"`, Name: `Water 'Marks'`}
	oddTable      = pgsrc.TableRef{Schema: "Sales Dept", Name: `Line "Items"`}
)

// TestNamesAsWritten: a publication, a slot and a watermarks table whose
// names need quoting are valid, set up, checked and streamed from under
// exactly those names.
func TestNamesAsWritten(t *testing.T) {
	for _, pub := range []string{"MyPub", `My "Pub", it's`} {
		t.Run(pub, func(t *testing.T) { namesAsWritten(t, pub) })
	}
}

func namesAsWritten(t *testing.T, oddPublication string) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, `CREATE SCHEMA "Sales Dept"; CREATE TABLE "Sales Dept"."Line ""Items""" (id int PRIMARY KEY, v text);
		CREATE SCHEMA "Ops ""Team"""`)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	cfg.Advanced.PublicationName = oddPublication
	cfg.Advanced.SlotName = oddSlot
	cfg.Advanced.WatermarksTable = oddWatermarks.String()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := cfg.Watermarks(); got != oddWatermarks {
		t.Fatalf("Watermarks() = %#v, want %#v", got, oddWatermarks)
	}
	tables := []pgsrc.TableRef{oddTable}
	if err := pgsrc.Setup(ctx, &cfg, tables, nil); err != nil {
		t.Fatal(err)
	}
	conn := db.Conn(t)
	if pub, exists, err := pgsrc.PublicationTables(ctx, conn, oddPublication); err != nil || !exists || !slices.Equal(pub, []pgsrc.TableRef{oddWatermarks, oddTable}) {
		t.Fatalf("publication %q: tables %v, exists %v, %v", oddPublication, pub, exists, err)
	}
	var plugin string
	if err := conn.QueryRow(ctx, `SELECT plugin FROM pg_replication_slots WHERE slot_name = $1`, oddSlot).Scan(&plugin); err != nil || plugin != "pgoutput" {
		t.Fatalf("slot %q: plugin %q, %v", oddSlot, plugin, err)
	}

	results, err := pgsrc.Check(ctx, &cfg, tables)
	if err != nil {
		t.Fatal(err)
	}
	if names := assertAllOK(t, results); !slices.Contains(names, "table "+oddTable.String()) {
		t.Errorf("Check lacks the table: %v", names)
	}
	catalog, err := pgsrc.OpenCatalog(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer catalog.Close(ctx)
	found, err := catalog.Discover(ctx, tables)
	if err != nil || len(found) != 1 || found[0].Ref() != oddTable {
		t.Fatalf("Discover = %v, %v", found, err)
	}

	r, err := pgsrc.StartReader(ctx, &cfg, 0, pgsrc.ReaderOptions{}, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	w, err := pgsrc.OpenWatermarks(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	db.Exec(t, `INSERT INTO "Sales Dept"."Line ""Items""" VALUES (1, 'a')`)
	if err := w.Write(ctx, "mark"); err != nil {
		t.Fatal(err)
	}
	d := pgsrc.NewDecoder()
	var got []string
	for len(got) < 2 {
		msg, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("receiving (so far %v): %v", got, err)
		}
		if msg.Kind != pgsrc.MessageWAL {
			continue
		}
		var ch pgsrc.Change
		if _, err := d.Decode(msg.WALStart, bytes.Clone(msg.Data), &ch, nil); err != nil {
			t.Fatal(err)
		}
		if ch.Op == pgsrc.OpInsert {
			got = append(got, pgsrc.TableRef{Schema: ch.Rel.Namespace, Name: ch.Rel.Name}.String()+":"+first(ch.New))
		}
	}
	if want := []string{oddTable.String() + ":1", oddWatermarks.String() + ":" + oddSlot}; !slices.Equal(got, want) {
		t.Fatalf("streamed inserts %q, want %q", got, want)
	}
}
