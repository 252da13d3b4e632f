package pgsrc

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// TestRDSToken: with fixed credentials in the SDK's default chain (the
// environment), the token is RDS's presigned connect URL for the user at
// the address (port 5432 by default) in the region, and its signature is
// the one AWS's signer makes for those credentials at the token's own
// time.
func TestRDSToken(t *testing.T) {
	const akid, secretKey = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	t.Setenv("AWS_ACCESS_KEY_ID", akid)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	c := Config{Address: "db.example.com", User: "capture", Auth: AuthAWSIAM, AWSRegion: "eu-west-1"}
	before := time.Now().UTC().Truncate(time.Second)
	token, err := c.credential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UTC()
	if !strings.HasPrefix(token, "db.example.com:5432?") {
		t.Fatalf("token %q is not for db.example.com:5432", token)
	}
	u, err := url.Parse("https://" + token)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	at, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil || at.Before(before) || at.After(after) {
		t.Fatalf("X-Amz-Date %q (%v) is not the time of the call, between %s and %s", q.Get("X-Amz-Date"), err, before, after)
	}
	for k, want := range map[string]string{
		"Action": "connect", "DBUser": "capture", "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Expires": "900",
		"X-Amz-Credential": akid + "/" + at.Format("20060102") + "/eu-west-1/rds-db/aws4_request", "X-Amz-SignedHeaders": "host",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// The same request signed with the same credentials at that time.
	req, err := http.NewRequest(http.MethodGet, "https://db.example.com:5432?Action=connect&DBUser=capture&X-Amz-Expires=900", nil)
	if err != nil {
		t.Fatal(err)
	}
	const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secretKey},
		req, emptyPayloadHash, "rds-db", "eu-west-1", at)
	if err != nil {
		t.Fatal(err)
	}
	want, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := q.Get("X-Amz-Signature"), want.Query().Get("X-Amz-Signature"); got == "" || got != want {
		t.Errorf("signature %q, want %q", got, want)
	}
}

// TestAuthCommand: the password is what the command prints, trimmed; a
// failing or silent command is an error naming the key and the command,
// with its stderr and never its stdout.
func TestAuthCommand(t *testing.T) {
	ctx := context.Background()
	run := func(script string) (string, error) {
		c := Config{Auth: AuthCommand, AuthCommand: []string{"sh", "-c", script}}
		return c.credential(ctx)
	}
	if got, err := run(`printf '  tok-1\n'`); err != nil || got != "tok-1" {
		t.Errorf("password %q, %v; want tok-1", got, err)
	}
	_, err := run(`echo half-a-token; echo 'no credentials found' >&2; exit 3`)
	if err == nil {
		t.Fatal("a failing command gave a password")
	}
	for _, want := range []string{"source.authCommand", `"sh"`, "exit status 3", "no credentials found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "half-a-token") {
		t.Errorf("error %q shows the command's stdout", err)
	}
	if _, err := run(`true`); err == nil || !strings.Contains(err.Error(), "printed nothing") {
		t.Errorf("a silent command: %v", err)
	}
}
