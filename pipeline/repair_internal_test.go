package pipeline

import (
	"math/big"
	"strings"
	"testing"
)

// TestBackfillRequestPurge: a request with a purge is written as JSON and
// read back whole; the capture refuses the purges it cannot do right.
func TestBackfillRequestPurge(t *testing.T) {
	req := BackfillRequest{Tables: []string{"public.t"}, Where: `"id" IN ('1'::integer)`, Purge: true, PurgeKeys: []string{"Ag=="}}
	enc := req.Encode()
	if !strings.HasPrefix(enc, BackfillMark+"{") {
		t.Fatalf("encoded %q, want JSON", enc)
	}
	got, err := ParseBackfillRequest(strings.TrimPrefix(enc, BackfillMark))
	if err != nil {
		t.Fatal(err)
	}
	if got.Where != req.Where || !got.Purge || len(got.PurgeKeys) != 1 || got.PurgeKeys[0] != "Ag==" {
		t.Fatalf("read back %+v, want %+v", got, req)
	}
	if enc := (BackfillRequest{Tables: []string{"public.t"}, Purge: true}).Encode(); !strings.Contains(enc, `"purge":true`) {
		t.Errorf("a whole-table purge encoded %q", enc)
	}
	for _, tc := range []struct {
		req  BackfillRequest
		want string
	}{
		{BackfillRequest{Tables: []string{"public.t"}, Where: "id > 1", Purge: true}, "needs purgeKeys"},
		{BackfillRequest{Tables: []string{"public.t", "public.u"}, Where: "id > 1", Purge: true, PurgeKeys: []string{"Ag=="}}, "one table's keys"},
		{BackfillRequest{Tables: []string{"public.t"}, PurgeKeys: []string{"Ag=="}}, "without purge"},
		{BackfillRequest{Tables: []string{"public.t"}, Where: "id = 1", Purge: true, PurgeKeys: []string{"not base64!"}}, "purge key"},
	} {
		err := tc.req.checkPurge()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.req, err, tc.want)
		}
	}
	for _, ok := range []BackfillRequest{
		{Tables: []string{"public.t", "public.u"}, Purge: true},
		{Tables: []string{"public.t"}, Where: "id = 1"},
		req,
	} {
		if err := ok.checkPurge(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// TestKeyLiterals: decimals are written exactly; strings are quoted
// whatever standard_conforming_strings says.
func TestKeyLiterals(t *testing.T) {
	for _, tc := range []struct {
		r    *big.Rat
		want string
	}{
		{big.NewRat(-1234, 100), "-12.34"},
		{big.NewRat(1, 4), "0.25"},
		{big.NewRat(7, 1), "7"},
		{new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Exp(big.NewInt(10), big.NewInt(20), nil)), "0.00000000000000000001"},
	} {
		if got := ratString(tc.r); got != tc.want {
			t.Errorf("ratString(%v) = %s, want %s", tc.r, got, tc.want)
		}
	}
	for in, want := range map[string]string{
		`plain`:      `'plain'`,
		`O'Brien`:    `'O''Brien'`,
		`back\slash`: `E'back\\slash'`,
		`'\'`:        `E'''\\'''`,
	} {
		if got := quoteLiteral(in); got != want {
			t.Errorf("quoteLiteral(%q) = %s, want %s", in, got, want)
		}
	}
}
