package schema

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestSchemaGolden pins the exact schemas of a sample table, indented for
// review, in testdata/*.avsc.golden. Run with -update after a deliberate
// change.
func TestSchemaGolden(t *testing.T) {
	cols := []Column{
		{Name: "id", Type: typ("int8")},
		{Name: "order-no", Type: typ("int4")},
		{Name: "price", Type: numericType(10, 2), Nullable: true},
		{Name: "placed_at", Type: typ("timestamptz")},
		{Name: "tags", Type: Type{Name: "_text", Category: 'A', Elem: &Type{Name: "text", Category: 'S'}}, Nullable: true},
		{Name: "lead_time", Type: typ("interval"), Nullable: true},
		{Name: "slots", Type: arrayOf(typ("interval"))},
		{Name: "attrs", Type: typ("hstore"), Nullable: true},
	}
	tbl := testTable(cols, []int{0, 1})
	deb := mustCodec(t, tbl, EnvelopeDebezium)
	flat := mustCodec(t, tbl, EnvelopeFlat)
	for name, js := range map[string]string{
		"orders.key":      deb.KeySchema(),
		"orders.debezium": deb.ValueSchema(),
		"orders.flat":     flat.ValueSchema(),
	} {
		t.Run(name, func(t *testing.T) {
			var got bytes.Buffer
			if err := json.Indent(&got, []byte(js), "", "  "); err != nil {
				t.Fatalf("schema is not JSON: %v", err)
			}
			got.WriteByte('\n')
			path := filepath.Join("testdata", name+".avsc.golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s differs from %s (run with -update if deliberate):\n%s", name, path, got.String())
			}
		})
	}
}
