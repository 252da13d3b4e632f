package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// tokenEndpointTimeout bounds one request to kafka.sasl.oauth.tokenEndpoint.
const tokenEndpointTimeout = 30 * time.Second

// saslMechanism returns the mechanism of kafka.sasl, nil when none is set.
// kgo calls a mechanism for each new broker connection and each
// re-authentication: the token command runs then, the client-credentials
// token is taken from its cache (fetched anew shortly before it expires),
// and AWS credentials are retrieved from the SDK's chain (which refreshes
// them), so credentials that rotate under a running capture are followed.
func (k *KafkaConfig) saslMechanism() (sasl.Mechanism, error) {
	s := &k.SASL
	switch s.Mechanism {
	case "":
		return nil, nil
	case SASLPlain:
		return plain.Auth{User: s.Username, Pass: string(s.Password)}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: string(s.Password)}.AsSha256Mechanism(), nil
	case SASLScramSHA512:
		return scram.Auth{User: s.Username, Pass: string(s.Password)}.AsSha512Mechanism(), nil
	case SASLOAuthBearer:
		token, err := s.tokenSource()
		if err != nil {
			return nil, err
		}
		return oauth.Oauth(func(ctx context.Context) (oauth.Auth, error) {
			t, err := token(ctx)
			if err != nil {
				return oauth.Auth{}, err
			}
			return oauth.Auth{Token: string(t), Extensions: s.Extensions}, nil
		}), nil
	case SASLAWSMSKIAM:
		cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(s.AWSRegion))
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl.mechanism aws_msk_iam: loading the AWS SDK's configuration: %w", err)
		}
		creds := cfg.Credentials
		return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
			if creds == nil {
				return aws.Auth{}, errors.New("kafka.sasl.mechanism aws_msk_iam: the AWS SDK's default chain found no credentials (environment, shared files, web identity, ECS or EC2 role)")
			}
			c, err := creds.Retrieve(ctx)
			if err != nil {
				return aws.Auth{}, fmt.Errorf("kafka.sasl.mechanism aws_msk_iam: retrieving AWS credentials: %w", err)
			}
			return aws.Auth{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, SessionToken: c.SessionToken,
				UserAgent: "pgkafka"}, nil
		}), nil
	}
	return nil, fmt.Errorf("kafka.sasl.mechanism: %q is not one of %s", s.Mechanism, strings.Join(saslMechanisms, ", "))
}

// tokenSource returns what makes oauthbearer's token: kafka.sasl.tokenCommand
// run anew each time, or kafka.sasl.oauth's client-credentials grant,
// cached until shortly before it expires.
func (s *SASLConfig) tokenSource() (func(context.Context) (secret.String, error), error) {
	if len(s.TokenCommand) > 0 {
		argv := s.TokenCommand
		return func(ctx context.Context) (secret.String, error) {
			return secret.Command(ctx, "kafka.sasl.tokenCommand", argv)
		}, nil
	}
	o := s.OAuth
	if o.TokenEndpoint == "" {
		return nil, errors.New("kafka.sasl.tokenCommand: required with kafka.sasl.mechanism oauthbearer, or kafka.sasl.oauth")
	}
	cc := &clientcredentials.Config{
		ClientID:     o.ClientID,
		ClientSecret: string(o.ClientSecret),
		TokenURL:     o.TokenEndpoint,
		Scopes:       strings.Fields(o.Scope),
	}
	// The context of TokenSource serves every later fetch: it carries the
	// HTTP client, no deadline.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: tokenEndpointTimeout})
	src := cc.TokenSource(ctx) // reuses a token until 10 s before it expires
	endpoint := redactURL(o.TokenEndpoint)
	return func(context.Context) (secret.String, error) {
		t, err := src.Token()
		if err != nil {
			return "", fmt.Errorf("kafka.sasl.oauth.tokenEndpoint %s: client-credentials grant for client %q: %w", endpoint, o.ClientID, err)
		}
		return secret.String(t.AccessToken), nil
	}, nil
}

// explainAuth names kafka.sasl in the errors a broker answers to SASL:
// kgo's alone ("UNSUPPORTED_SASL_MECHANISM") do not say which key to
// change. Other errors pass as they are.
func (k *KafkaConfig) explainAuth(err error) error {
	m := k.SASL.Mechanism
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		if m == "" {
			return fmt.Errorf("kafka.sasl.mechanism: the brokers at %v ask for SASL, and none is set: %w", k.Brokers, err)
		}
		return fmt.Errorf("kafka.sasl.mechanism: the brokers at %v do not offer %s on this listener: choose one they do (%s), or another listener: %w",
			k.Brokers, m, strings.Join(saslMechanisms, ", "), err)
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("kafka.sasl: the brokers at %v refused the credentials of mechanism %s: %w", k.Brokers, m, err)
	case errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("kafka.sasl.mechanism %s: the brokers at %v answered out of turn: %w", m, k.Brokers, err)
	}
	return err
}
