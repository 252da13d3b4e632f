package pgsrc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
)

// Authentication methods, the values of source.auth.
const (
	// AuthPassword authenticates with source.password.
	AuthPassword = "password"
	// AuthAWSIAM authenticates with an RDS IAM token built for each new
	// connection from the AWS SDK's default credential chain.
	AuthAWSIAM = "aws_iam"
	// AuthCommand authenticates with what source.authCommand prints, run
	// for each new connection.
	AuthCommand = "command"
)

// authCommandTimeout bounds one run of source.authCommand.
const authCommandTimeout = 30 * time.Second

// credential is the password of a new connection. Short-lived credentials
// (a token valid for minutes) are made anew for each connection, so that a
// reconnect after one expired authenticates with a fresh one.
func (c *Config) credential(ctx context.Context) (string, error) {
	switch c.Auth {
	case AuthCommand:
		return runAuthCommand(ctx, c.AuthCommand)
	case AuthAWSIAM:
		return c.rdsToken(ctx)
	default:
		return string(c.Password), nil
	}
}

// runAuthCommand runs argv (no shell) and returns what it printed on
// stdout, trimmed. Its error holds the command's name and the start of
// what it printed on stderr, never its stdout.
func runAuthCommand(ctx context.Context, argv []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, authCommandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %s", err, authCommandTimeout)
		}
		return "", fmt.Errorf("source.authCommand: running %q for the password of a new connection: %w: %s", argv[0], err, msg)
	}
	password := strings.TrimSpace(stdout.String())
	if password == "" {
		return "", fmt.Errorf("source.authCommand: %q printed nothing on stdout: it must print the password (or token) of a new connection", argv[0])
	}
	return password, nil
}

// rdsToken builds an RDS IAM authentication token (valid 15 minutes) for
// source.user at source.address, signed with the credentials of the AWS
// SDK's default chain (environment, shared files, web identity, ECS or
// EC2 roles).
func (c *Config) rdsToken(ctx context.Context) (string, error) {
	endpoint := c.Address
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		endpoint = net.JoinHostPort(endpoint, "5432")
	}
	aws, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(c.AWSRegion))
	if err != nil {
		return "", fmt.Errorf("source.auth aws_iam: loading AWS credentials: %w", err)
	}
	token, err := auth.BuildAuthToken(ctx, endpoint, c.AWSRegion, c.User, aws.Credentials)
	if err != nil {
		return "", fmt.Errorf("source.auth aws_iam: building an RDS IAM token for user %q at %s in region %s: %w", c.User, endpoint, c.AWSRegion, err)
	}
	return token, nil
}
