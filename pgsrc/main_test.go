package pgsrc_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// cluster is the PostgreSQL cluster the tests of this package share; each
// test takes a database of its own with cluster.NewDatabase(t).
var cluster *pgtest.Cluster

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	c, err := pgtest.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting PostgreSQL for the tests:", err)
		return 1
	}
	cluster = c
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping PostgreSQL:", err)
		}
	}()
	return m.Run()
}

// testContext is a context bounded for one test.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
