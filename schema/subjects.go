package schema

import "fmt"

// SubjectNameStrategy names the registry subjects of a topic's key and
// value schemas, as Confluent's serializers do (schemaRegistry.subjectNameStrategy).
type SubjectNameStrategy uint8

const (
	// SubjectTopic: <topic>-key and <topic>-value (TopicNameStrategy, the
	// default): one key and one value shape a topic.
	SubjectTopic SubjectNameStrategy = iota
	// SubjectRecord: the record's full name (RecordNameStrategy): several
	// shapes on a topic, one subject per record name across topics.
	SubjectRecord
	// SubjectTopicRecord: <topic>-<full name> (TopicRecordNameStrategy).
	SubjectTopicRecord
)

// ParseSubjectNameStrategy parses topic, record or topic_record ("" is topic).
func ParseSubjectNameStrategy(s string) (SubjectNameStrategy, error) {
	switch s {
	case "", "topic":
		return SubjectTopic, nil
	case "record":
		return SubjectRecord, nil
	case "topic_record":
		return SubjectTopicRecord, nil
	}
	return 0, fmt.Errorf("%q is not one of topic, record, topic_record", s)
}

func (s SubjectNameStrategy) String() string {
	switch s {
	case SubjectRecord:
		return "record"
	case SubjectTopicRecord:
		return "topic_record"
	}
	return "topic"
}

// Subjects returns the key and value subjects of a table's records on
// topic, whose Avro namespace is namespace (sanitized here as NewCodec
// does), under envelope env.
func (s SubjectNameStrategy) Subjects(topic, namespace string, env Envelope) (key, value string) {
	ns := SanitizeNamespace(namespace)
	keyRecord, valueRecord := ns+".Key", ns+".Envelope"
	if env == EnvelopeFlat {
		valueRecord = ns + ".Value"
	}
	switch s {
	case SubjectRecord:
		return keyRecord, valueRecord
	case SubjectTopicRecord:
		return topic + "-" + keyRecord, topic + "-" + valueRecord
	}
	return topic + "-key", topic + "-value"
}
