package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

var (
	// ErrFenced reports that another instance with the same name took over.
	ErrFenced = errors.New("fenced")
	// ErrSlotLost reports a slot gone or invalidated while a checkpoint
	// exists: the changes since cannot be read again.
	ErrSlotLost = errors.New("replication slot lost")
	// errRestart ends a session so that the next starts at once from the
	// checkpoint just committed (after a re-backfill request).
	errRestart = errors.New("restarting the session for a requested backfill")
	// errBackfillTableGone: a table being backfilled no longer exists
	// under its name (backfillError).
	errBackfillTableGone = errors.New("the table no longer exists (dropped or renamed): the next session finds out which")
	// ErrSlotAhead reports a slot confirmed past the checkpoint: the changes
	// in between were confirmed without reaching Kafka.
	ErrSlotAhead = errors.New("replication slot ahead of the checkpoint")
)

// TopicClashError: two captured tables go to one Kafka topic, or to
// topics Kafka cannot hold together (names equal but for '.' against '_').
// Their default topics, <kafka.topicPrefix>.<schema>.<table> with the
// characters Kafka refuses replaced by '_', may clash ("t x" and t_x).
type TopicClashError struct {
	Tables [2]pgsrc.TableRef
	Topics [2]string
}

func (e *TopicClashError) Error() string {
	return e.clash() + ": list the tables to capture under bindings (`pgkafka discover` prints them) and set bindings[].target of one of them to another topic"
}

// clash says which tables go to which topics.
func (e *TopicClashError) clash() string {
	a, b := e.Tables[0].String(), e.Tables[1].String()
	if e.Topics[0] == e.Topics[1] {
		return fmt.Sprintf("tables %q and %q both go to topic %q (characters Kafka refuses in topic names become '_')", a, b, e.Topics[0])
	}
	return fmt.Sprintf("tables %q and %q go to topics %q and %q, which Kafka cannot hold together (it takes '.' and '_' for the same)", a, b, e.Topics[0], e.Topics[1])
}

// TableRenamedError is a captured table renamed while the capture ran:
// its changes under the new name would reach no topic.
type TableRenamedError struct {
	From, To  pgsrc.TableRef
	OID       uint32
	CommitLSN pglogrepl.LSN // of the first transaction changing it under the new name (0: unknown)
	Topic     string        // the binding's topic
}

func (e *TableRenamedError) Error() string {
	return fmt.Sprintf("captured table %s (relation %d) was renamed to %s (first changed under that name in the transaction committing at LSN %s): "+
		"its changes under the new name are not captured by the binding of %s; name it in its binding (resource: {namespace: %s, stream: %s}) "+
		"with target: %s to keep its topic, add %s to source.advanced.skip_backfills (its rows are in the topic already), and restart: "+
		"the capture resumes from its checkpoint, before that transaction, and captures the changes under both names",
		e.From, e.OID, e.To, e.CommitLSN, e.From, e.To.Schema, e.To.Name, e.Topic, e.To)
}

// isFenced reports the errors a fenced transactional producer sees: not
// always PRODUCER_FENCED.
func isFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.InvalidTxnState) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// Retryable reports whether a failed session may be retried from the last
// checkpoint: a lost connection, a server or broker restarting, a timeout.
// Fencing, a lost slot, an unreadable checkpoint, bad input, refused
// prerequisites and clashing topics are not.
func Retryable(err error) bool {
	var prereq *pgsrc.PrerequisiteError
	var notFound *pgsrc.TableNotFoundError
	var incompatible *schema.IncompatibleError
	var clash *TopicClashError
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, errTxnAborted), errors.Is(err, pgsrc.ErrLeaseLost), errors.Is(err, errBackfillTableGone):
		return true
	case errors.Is(err, ErrFenced), isFenced(err), errors.Is(err, ErrSlotLost), errors.Is(err, ErrSlotAhead),
		errors.Is(err, offsets.ErrUnreadable), errors.Is(err, pgsrc.ErrSlotInvalidated), errors.Is(err, pgsrc.ErrSlotMismatch),
		errors.As(err, &prereq), errors.As(err, &notFound), errors.As(err, &incompatible), errors.As(err, &clash):
		return false
	case pgsrc.IsRetryable(err), kerr.IsRetriable(err), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
