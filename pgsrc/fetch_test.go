package pgsrc_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// TestFetchRows reads rows by a composite key of a text and a timestamp in
// one statement: each row found comes with the index of its key and its
// values in the text form pgoutput sends; missing keys are not reported.
func TestFetchRows(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	db.Exec(t, `CREATE TABLE "Fe tch" (k text, at timestamptz, big text, xs int[], n int, PRIMARY KEY (k, at));
		INSERT INTO "Fe tch" VALUES ('a', '2024-01-01 00:00:00+00', repeat('x', 100000), '{1,2,3}', 1),
			('b''q', '2024-01-02 00:00:00+00', NULL, '{}', 2)`)
	conn := db.Conn(t)
	tables, err := pgsrc.Discover(ctx, conn, []pgsrc.TableRef{{Schema: "public", Name: "Fe tch"}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := pgsrc.OpenFetcher(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(ctx)
	keys := [][][]byte{
		{[]byte("missing"), []byte("2024-01-01 00:00:00+00")},
		{[]byte("b'q"), []byte("2024-01-02 00:00:00+00")},
		{[]byte("a"), []byte("2024-01-01 00:00:00+00")},
	}
	got := map[int]string{}
	err = f.FetchRows(ctx, &tables[0], []string{"k", "at"}, []string{"big", "xs"}, keys, func(i int, row []pgsrc.Value) error {
		var b strings.Builder
		for _, v := range row {
			if v.Kind == pgsrc.ValueNull {
				b.WriteString("NULL;")
			} else {
				fmt.Fprintf(&b, "%d:%.3s;", len(v.Data), v.Data)
			}
		}
		got[i] = b.String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{1: "NULL;2:{};", 2: "100000:xxx;7:{1,;"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}
