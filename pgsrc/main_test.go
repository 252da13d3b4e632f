package pgsrc_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// The PostgreSQL cluster the tests of this package share, started by the
// first test that needs one (fuzz workers and pure unit tests never do);
// each test takes a database of its own with pgCluster(t).NewDatabase(t).
var (
	clusterOnce sync.Once
	cluster     *pgtest.Cluster
	clusterErr  error
)

func pgCluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = pgtest.New() })
	if clusterErr != nil {
		t.Fatalf("starting PostgreSQL for the tests: %v", clusterErr)
	}
	return cluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		if err := cluster.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping PostgreSQL:", err)
		}
	}
	os.Exit(code)
}

// testContext is a context bounded for one test.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
