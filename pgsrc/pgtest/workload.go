package pgtest

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// The demo's sample schema: a shop's customers and orders.
const demoSchema = `
CREATE TABLE customers (
	id         serial PRIMARY KEY,
	name       text NOT NULL,
	email      text,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
	id          bigserial PRIMARY KEY,
	customer_id int NOT NULL REFERENCES customers ON DELETE CASCADE,
	amount      numeric(10,2) NOT NULL,
	status      text NOT NULL DEFAULT 'new',
	placed_at   timestamptz NOT NULL DEFAULT now(),
	details     jsonb
);
INSERT INTO customers (name, email) VALUES
	('Ada Lovelace', 'ada@example.com'),
	('Grace Hopper', 'grace@example.com'),
	('Edsger Dijkstra', NULL);
`

// SetupDemo creates the demo's capture role (flow_capture, with REPLICATION
// and a random password), its database "demo" owned by that role, and the
// sample schema. It returns the source configuration to capture it.
func (c *Cluster) SetupDemo(ctx context.Context) (pgsrc.Config, error) {
	pw := make([]byte, 12)
	if _, err := crand.Read(pw); err != nil {
		return pgsrc.Config{}, err
	}
	password := hex.EncodeToString(pw)
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE flow_capture WITH LOGIN REPLICATION PASSWORD '%s'", password),
		"CREATE DATABASE demo OWNER flow_capture",
	} {
		if err := c.superExec(ctx, sql); err != nil {
			return pgsrc.Config{}, fmt.Errorf("demo setup: %w", err)
		}
	}
	cfg := pgsrc.Config{
		Address:  fmt.Sprintf("%s:%d", c.Host(), c.Port()),
		Database: "demo",
		User:     "flow_capture",
		Password: secret.String(password),
	}
	cfg.SetDefaults()
	conn, err := pgsrc.Connect(ctx, &cfg)
	if err != nil {
		return pgsrc.Config{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, demoSchema); err != nil {
		return pgsrc.Config{}, fmt.Errorf("demo schema: %w", err)
	}
	return cfg, nil
}

var demoStatuses = []string{"paid", "packed", "shipped", "delivered"}

// RunWorkload writes a steady load to the demo schema, one transaction
// every interval (new customers, new orders, status updates, the odd
// cancelled order deleted), until ctx ends.
func RunWorkload(ctx context.Context, cfg *pgsrc.Config, interval time.Duration) error {
	conn, err := pgsrc.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			switch {
			case n%7 == 0:
				_, err := tx.Exec(ctx, `INSERT INTO customers (name, email) VALUES ($1, $2)`,
					fmt.Sprintf("Customer %d", n), fmt.Sprintf("c%d@example.com", n))
				return err
			case n%5 == 0:
				_, err := tx.Exec(ctx, `UPDATE orders SET status = $1 WHERE id = (SELECT id FROM orders WHERE status <> 'delivered' ORDER BY random() LIMIT 1)`,
					demoStatuses[rand.IntN(len(demoStatuses))])
				return err
			case n%11 == 0:
				_, err := tx.Exec(ctx, `DELETE FROM orders WHERE id = (SELECT min(id) FROM orders)`)
				return err
			default:
				_, err := tx.Exec(ctx, `INSERT INTO orders (customer_id, amount, details)
					SELECT id, $1, jsonb_build_object('items', $2::int) FROM customers ORDER BY random() LIMIT 1`,
					fmt.Sprintf("%d.%02d", rand.IntN(500), rand.IntN(100)), 1+rand.IntN(5))
				return err
			}
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("demo workload: %w", err)
		}
	}
}
