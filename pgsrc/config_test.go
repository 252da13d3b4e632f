package pgsrc_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc"
)

func validConfig() pgsrc.Config {
	c := pgsrc.Config{Address: "db.example.com:5432", Password: "s3cret"}
	c.SetDefaults()
	return c
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*pgsrc.Config)
		want   []string // one substring per expected problem; none: valid
	}{
		{"defaults", func(*pgsrc.Config) {}, nil},
		{"host only", func(c *pgsrc.Config) { c.Address = "localhost" }, nil},
		{"empty", func(c *pgsrc.Config) { *c = pgsrc.Config{} }, []string{
			"source.address: required", "source.database: must not be empty", "source.user: must not be empty",
			"source.password: required", "source.advanced.backfill_chunk_size: must be at least 1",
			"source.advanced.publicationName:", "source.advanced.slotName:", "source.advanced.watermarksTable:",
		}},
		{"url address", func(c *pgsrc.Config) { c.Address = "postgres://h/db" }, []string{"source.address:"}},
		{"empty port", func(c *pgsrc.Config) { c.Address = "h:" }, []string{"source.address:", "empty port"}},
		{"bad slot", func(c *pgsrc.Config) { c.Advanced.SlotName = "Flow-Slot" }, []string{"source.advanced.slotName:"}},
		// Any name PostgreSQL takes quoted: pgkafka quotes it everywhere.
		{"publication starting with a digit", func(c *pgsrc.Config) { c.Advanced.PublicationName = "1pub" }, nil},
		{"publication in upper case", func(c *pgsrc.Config) { c.Advanced.PublicationName = "MyPub" }, nil},
		{"publication with spaces and quotes", func(c *pgsrc.Config) { c.Advanced.PublicationName = `My "Pub", it's` }, nil},
		{"empty publication", func(c *pgsrc.Config) { c.Advanced.PublicationName = "" }, []string{"source.advanced.publicationName: must not be empty"}},
		{"publication too long", func(c *pgsrc.Config) { c.Advanced.PublicationName = strings.Repeat("p", 64) }, []string{"source.advanced.publicationName:", "64 bytes", "at most 63"}},
		{"publication with NUL", func(c *pgsrc.Config) { c.Advanced.PublicationName = "a\x00b" }, []string{"source.advanced.publicationName:", "without NUL"}},
		{"publication not UTF-8", func(c *pgsrc.Config) { c.Advanced.PublicationName = "a\xffb" }, []string{"source.advanced.publicationName:", "UTF-8"}},
		// Slot names: PostgreSQL's own rule.
		{"slot in upper case", func(c *pgsrc.Config) { c.Advanced.SlotName = "MySlot" }, []string{"source.advanced.slotName:"}},
		{"slot with a space", func(c *pgsrc.Config) { c.Advanced.SlotName = "my slot" }, []string{"source.advanced.slotName:"}},
		{"slot too long", func(c *pgsrc.Config) { c.Advanced.SlotName = strings.Repeat("s", 64) }, []string{"source.advanced.slotName:"}},
		{"watermarks with spaces and quotes", func(c *pgsrc.Config) { c.Advanced.WatermarksTable = `Ops "Team".Water 'Marks'` }, nil},
		{"watermarks table too long", func(c *pgsrc.Config) { c.Advanced.WatermarksTable = "ops." + strings.Repeat("w", 64) }, []string{"source.advanced.watermarksTable:", "at most 63"}},
		{"unqualified watermarks", func(c *pgsrc.Config) { c.Advanced.WatermarksTable = "flow_watermarks" }, []string{"source.advanced.watermarksTable:"}},
		{"bad skip_backfills", func(c *pgsrc.Config) { c.Advanced.SkipBackfills = "public.a, b" }, []string{"source.advanced.skip_backfills:", `"b"`}},
		{"bad sslmode", func(c *pgsrc.Config) { c.Advanced.SSLMode = "on" }, []string{"source.advanced.sslmode:"}},
		{"auth command", func(c *pgsrc.Config) {
			c.Auth, c.Password, c.AuthCommand = pgsrc.AuthCommand, "", []string{"vault", "read"}
		}, nil},
		{"auth aws_iam", func(c *pgsrc.Config) { c.Auth, c.Password, c.AWSRegion = pgsrc.AuthAWSIAM, "", "eu-west-1" }, nil},
		{"unknown auth", func(c *pgsrc.Config) { c.Auth = "kerberos" }, []string{`source.auth: "kerberos" is not one of password, aws_iam, command`}},
		{"auth command without its command", func(c *pgsrc.Config) { c.Auth, c.Password = pgsrc.AuthCommand, "" }, []string{"source.authCommand: required with source.auth command"}},
		{"auth command with a password", func(c *pgsrc.Config) { c.Auth, c.AuthCommand = pgsrc.AuthCommand, []string{"cat"} }, []string{"source.password: set, but source.auth command makes"}},
		{"auth aws_iam without a region", func(c *pgsrc.Config) { c.Auth, c.Password = pgsrc.AuthAWSIAM, "" }, []string{"source.awsRegion: required with source.auth aws_iam"}},
		{"a command without auth command", func(c *pgsrc.Config) { c.AuthCommand = []string{"cat"} }, []string{`source.authCommand: set, but source.auth is "password"`}},
		{"a region without auth aws_iam", func(c *pgsrc.Config) { c.AWSRegion = "us-east-1" }, []string{`source.awsRegion: set, but source.auth is "password"`}},
		{"every problem at once", func(c *pgsrc.Config) {
			c.Address, c.Advanced.SlotName, c.Advanced.SSLMode = "", "X", "on"
		}, []string{"source.address:", "source.advanced.slotName:", "source.advanced.sslmode:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %v", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, lacks %q", err, w)
				}
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "source.") {
					t.Errorf("problem %q has no key path", l)
				}
			}
		})
	}
}

// TestConfigWatermarks: Watermarks parses what Validate accepts, and
// panics on what it rejects (a programmer error: callers validate first).
func TestConfigWatermarks(t *testing.T) {
	for _, tc := range []struct {
		table string
		want  pgsrc.TableRef
	}{
		{"", pgsrc.TableRef{Schema: "public", Name: "flow_watermarks"}}, // the default
		{"ops.Marks", pgsrc.TableRef{Schema: "ops", Name: "Marks"}},
		{`Ops "Team".Water 'Marks'`, pgsrc.TableRef{Schema: `Ops "Team"`, Name: `Water 'Marks'`}}, // as written: no SQL quoting
	} {
		c := validConfig()
		if tc.table != "" {
			c.Advanced.WatermarksTable = tc.table
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%q: Validate() = %v", tc.table, err)
		}
		if got := c.Watermarks(); got != tc.want {
			t.Errorf("%q: Watermarks() = %#v, want %#v", tc.table, got, tc.want)
		}
	}
	for _, bad := range []string{"flow_watermarks", "a.b.c", ".t", "public." + strings.Repeat("w", 64)} {
		c := validConfig()
		c.Advanced.WatermarksTable = bad
		if c.Validate() == nil {
			t.Fatalf("%q: Validate() = nil, want a problem", bad)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%q: Watermarks() did not panic on a value Validate rejects", bad)
				}
			}()
			c.Watermarks()
		}()
	}
}

func TestSecretRedacted(t *testing.T) {
	c := validConfig()
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.Password)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%q shows the password", s)
		}
	}
}
