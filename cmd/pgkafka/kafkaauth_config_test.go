package main

import (
	"strings"
	"testing"
)

// TestConfigKafkaAuth: the keys of kafka.sasl's oauthbearer and
// aws_msk_iam and of schemaRegistry's TLS and bearer token load from a
// file and the environment (the secrets from PGKAFKA_ variables), and a
// bad combination exits with each key path.
func TestConfigKafkaAuth(t *testing.T) {
	path := writeConfig(t, validConfig+`
  tls: {enabled: true, caFile: /etc/ssl/ca.pem}
  sasl:
    mechanism: oauthbearer
    oauth: {tokenEndpoint: "https://login.example/token", clientId: pgkafka, scope: "kafka"}
    extensions: {logicalCluster: lkc-1, identityPoolId: pool-2}
schemaRegistry:
  url: https://sr.example
  tokenCommand: [gcloud, auth, print-access-token]
  tls: {caFile: /etc/ssl/ca.pem, certFile: c.pem, keyFile: k.pem}
`)
	cfg, err := loadConfig(path, []string{"PGKAFKA_KAFKA__SASL__OAUTH__CLIENTSECRET=cs-Secret1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Kafka.SASL
	if s.OAuth.ClientSecret != "cs-Secret1" || s.OAuth.ClientID != "pgkafka" || s.Extensions["logicalCluster"] != "lkc-1" || s.Extensions["identityPoolId"] != "pool-2" {
		t.Errorf("kafka.sasl: %+v", s)
	}
	r := cfg.SchemaRegistry
	if strings.Join(r.TokenCommand, " ") != "gcloud auth print-access-token" || r.TLS.CertFile != "c.pem" {
		t.Errorf("schemaRegistry: %+v", r)
	}

	path = writeConfig(t, validConfig+`
  sasl: {mechanism: aws_msk_iam, tokenCommand: [x]}
schemaRegistry:
  bearerToken: bt-Secret2
  tokenCommand: [y]
`)
	_, err = loadConfig(path, nil, nil)
	for _, want := range []string{"kafka.tls.enabled: required with kafka.sasl.mechanism aws_msk_iam",
		`kafka.sasl: tokenCommand, oauth and extensions go with kafka.sasl.mechanism oauthbearer, not "aws_msk_iam"`,
		"schemaRegistry.bearerToken: set, and so is schemaRegistry.tokenCommand"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "bt-Secret2") {
		t.Errorf("the token is in the error: %v", err)
	}
}
