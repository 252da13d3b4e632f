package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// TestSSHTunnelCheckDiscover: `check` and `discover` reach a database that
// only an SSH bastion reaches (PostgreSQL in the bastion's network
// namespace, on its loopback), with the private key from the environment;
// without a host-key check the configuration is refused, naming the keys;
// the key never reaches the output.
func TestSSHTunnelCheckDiscover(t *testing.T) {
	b := pgtest.StartBastion(t)
	c := pgtest.Start(t, pgtest.WithBastion(b))
	db := c.NewDatabase(t)
	db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text)`)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	config := func(hostKey string) string {
		return writeConfig(t, fmt.Sprintf(`
name: it
source:
  address: %s
  database: %s
  user: postgres
  password: %s
  advanced: {sslmode: disable}
  networkTunnel:
    sshForwarding:
      sshEndpoint: %s
%s
bindings:
%s
kafka:
  brokers: [%s]
schemaRegistry:
  url: %s
`, c.Address(), db.Name, c.SuperuserPassword(), b.Endpoint(), hostKey, ordersBinding,
			strings.Join(broker.ListenAddrs(), ", "), reg.URL()))
	}
	t.Setenv("PGKAFKA_SOURCE__NETWORKTUNNEL__SSHFORWARDING__PRIVATEKEY", b.PrivateKey())
	key := strings.Split(strings.TrimSpace(b.PrivateKey()), "\n")[1]

	path := config("      hostKey: " + strconv.Quote(b.HostKey()))
	code, out := pgkafka(t, "check", "-c", path)
	if code != 0 || !strings.Contains(out, "through the SSH tunnel "+strings.TrimPrefix(b.Endpoint(), "ssh://")) {
		t.Fatalf("check through the tunnel: exit %d\n%s", code, out)
	}
	code, out = pgkafka(t, "discover", "-c", path)
	if code != 0 || !strings.Contains(out, `stream: "orders"`) {
		t.Fatalf("discover through the tunnel: exit %d\n%s", code, out)
	}
	if strings.Contains(out, key) {
		t.Errorf("the private key reached the output:\n%s", out)
	}

	code, out = pgkafka(t, "check", "-c", config("      hostKey: SHA256:AAAAC3NzaC1lZDI1NTE5AAAAIKZ0OCdaRN1mPCjFN8r5T4Zl6yB2"))
	if code != 1 || !strings.Contains(out, "source.networkTunnel.sshForwarding.hostKey: the server presented host key ssh-ed25519 SHA256:") {
		t.Errorf("a wrong pinned host key: exit %d, want 1 and hostKey named\n%s", code, out)
	}

	code, out = pgkafka(t, "check", "-c", config(""))
	if code != 2 || !strings.Contains(out, "source.networkTunnel.sshForwarding: the SSH server's host key is not checked") ||
		!strings.Contains(out, "source.networkTunnel.sshForwarding.insecureIgnoreHostKey") {
		t.Errorf("without a host-key check: exit %d, want 2 and the keys named\n%s", code, out)
	}
	if strings.Contains(out, key) {
		t.Errorf("the private key reached the output:\n%s", out)
	}
}
