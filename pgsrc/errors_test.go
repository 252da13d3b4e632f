package pgsrc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgkafka/pgkafka/pgsrc"
)

func TestIsRetryable(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("reading: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"admin shutdown", pg("57P01"), true},
		{"crash shutdown", pg("57P02"), true},
		{"cannot connect now", pg("57P03"), true},
		{"too many connections", pg("53300"), true},
		{"connection failure", pg("08006"), true},
		{"wrong password", pg("28P01"), false},
		{"syntax error", pg("42601"), false},
		{"unexpected EOF", fmt.Errorf("receiving: %w", io.ErrUnexpectedEOF), true},
		{"net error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{"slot invalidated", fmt.Errorf("x: %w", pgsrc.ErrSlotInvalidated), false},
		{"plain", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pgsrc.IsRetryable(tc.err); got != tc.want {
				t.Errorf("IsRetryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestPrerequisiteError(t *testing.T) {
	err := fmt.Errorf("setting up: %w", &pgsrc.PrerequisiteError{
		Check: "wal_level", Problem: "wal_level is \"replica\"", Fix: pgsrc.WALLevelFix(), Err: pgsrc.ErrWALLevel})
	if !errors.Is(err, pgsrc.ErrWALLevel) {
		t.Error("errors.Is(err, ErrWALLevel) is false")
	}
	want := "setting up: prerequisite wal_level: wal_level is \"replica\"; to fix it, run as a superuser or the owner:\n    ALTER SYSTEM SET wal_level = logical;\n    -- then restart"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Error() = %q, want prefix %q", err, want)
	}
}

func TestFixSQL(t *testing.T) {
	weird := pgsrc.TableRef{Schema: "Sales", Name: `o"rders`}
	for _, tc := range []struct{ got, want string }{
		{pgsrc.GrantReplicationSQL(`ca"pture`), `ALTER ROLE "ca""pture" WITH REPLICATION;`},
		{pgsrc.CreateWatermarksSQL(weird, "u"), `CREATE TABLE IF NOT EXISTS "Sales"."o""rders" (slot TEXT PRIMARY KEY, watermark TEXT);` + "\n" +
			`GRANT ALL PRIVILEGES ON TABLE "Sales"."o""rders" TO "u";`},
		{pgsrc.CreatePublicationSQL("pub", []pgsrc.TableRef{weird, {Schema: "public", Name: "t"}}),
			`CREATE PUBLICATION "pub" FOR TABLE "Sales"."o""rders", "public"."t" WITH (publish_via_partition_root = true);`},
		{pgsrc.AddTablesSQL("pub", []pgsrc.TableRef{weird}), `ALTER PUBLICATION "pub" ADD TABLE "Sales"."o""rders";`},
		{pgsrc.SetViaRootSQL("pub"), `ALTER PUBLICATION "pub" SET (publish_via_partition_root = true);`},
		{pgsrc.GrantSelectSQL(weird, "u"), `GRANT USAGE ON SCHEMA "Sales" TO "u"; GRANT SELECT ON TABLE "Sales"."o""rders" TO "u";`},
		{pgsrc.DropSlotSQL("s'1"), `SELECT pg_drop_replication_slot('s''1');`},
	} {
		if !strings.HasPrefix(tc.got, tc.want) {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
