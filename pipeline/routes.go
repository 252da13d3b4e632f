package pipeline

import (
	"fmt"
	"regexp"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Routes (kafka.topicRoutes, Debezium's ByLogicalTableRouter) send the
// records of every table whose <schema>.<table> a regular expression
// matches to one topic: the shards of a logical table (orders_2024_01,
// orders_2024_02, ...) or one table in many tenant schemas. Their records
// take the topic's name for their Avro names, so tables of one shape share
// one schema, and their keys a field naming the table they come from (its
// default topic, as Debezium's __dbz__physicalTableIdentifier), so that
// equal keys of two tables stay two keys. The source block still names the
// table. A binding's target wins over a route.

// TopicRoute is one of kafka.topicRoutes.
type TopicRoute struct {
	// Match is a regular expression over "<schema>.<table>", matched whole.
	Match string `koanf:"match"`
	// Topic is where the matching tables' records go.
	Topic string `koanf:"topic"`
	// KeyField is the key field naming the source table; default
	// DefaultRouteKeyField.
	KeyField string `koanf:"keyField"`

	re *regexp.Regexp
}

// DefaultRouteKeyField is TopicRoute.KeyField's default, Debezium's.
const DefaultRouteKeyField = "__dbz__physicalTableIdentifier"

// validateRoutes compiles the routes, reporting every problem with its
// key path.
func (k *KafkaConfig) validateRoutes(p *problems) {
	for i := range k.TopicRoutes {
		r := &k.TopicRoutes[i]
		key := fmt.Sprintf("kafka.topicRoutes[%d]", i)
		re, err := regexp.Compile(`\A(?:` + r.Match + `)\z`)
		switch {
		case r.Match == "":
			p.add(key+".match", "required: a regular expression over <schema>.<table>, e.g. public\\.orders_\\d+")
		case err != nil:
			p.add(key+".match", "%q is not a regular expression: %v", r.Match, err)
		default:
			r.re = re
		}
		if !validTopicName(r.Topic) {
			p.add(key+".topic", "%q is not a valid Kafka topic name (letters, digits, '.', '_', '-', at most 249)", r.Topic)
		}
	}
}

// route returns the route of ref's records, nil when a binding's target
// or no route decides their topic.
func (c *Config) route(ref pgsrc.TableRef) *TopicRoute {
	for _, b := range c.Bindings {
		if b.Resource.Namespace == ref.Schema && b.Resource.Stream == ref.Name && b.Target != "" {
			return nil
		}
	}
	name := ref.Schema + "." + ref.Name
	for i := range c.Kafka.TopicRoutes {
		r := &c.Kafka.TopicRoutes[i]
		re := r.re
		if re == nil { // Validate not called: compiled here, not kept (no write to share)
			var err error
			if re, err = regexp.Compile(`\A(?:` + r.Match + `)\z`); err != nil {
				continue
			}
		}
		if re.MatchString(name) {
			return r
		}
	}
	return nil
}

// naming is where ref's records go and what their schemas are named.
type naming struct {
	topic, namespace string
	tag              schema.KeyTag // set for routed tables
	subjects         schema.SubjectNameStrategy
}

func (c *Config) naming(ref pgsrc.TableRef) naming {
	subjects, _ := schema.ParseSubjectNameStrategy(c.SchemaRegistry.SubjectNameStrategy) // Validate refused bad ones
	n := naming{
		topic:     c.TopicFor(ref),
		namespace: c.Kafka.TopicPrefix + "." + ref.Schema + "." + ref.Name,
		subjects:  subjects,
	}
	if r := c.route(ref); r != nil {
		n.namespace = r.Topic
		field := r.KeyField
		if field == "" {
			field = DefaultRouteKeyField
		}
		n.tag = schema.KeyTag{Field: field, Value: c.defaultTopic(ref)}
	}
	return n
}

// subjects returns the key and value subjects of ref's records.
func (c *Config) subjects(ref pgsrc.TableRef) (key, value string) {
	n := c.naming(ref)
	env, _ := c.Format.ParsedEnvelope()
	return n.subjects.Subjects(n.topic, n.namespace, env)
}
