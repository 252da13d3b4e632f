package pgsrc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// MessageKind tells a WAL data message from a keepalive.
type MessageKind uint8

// The kinds of replication message Receive returns.
const (
	// MessageNone means the wait ended (deadline) before anything arrived.
	MessageNone MessageKind = iota
	// MessageWAL carries a pgoutput message in Data.
	MessageWAL
	// MessageKeepalive reports the server's WAL end and may ask for a reply.
	MessageKeepalive
)

// Message is one message of the replication stream. Data aliases the
// connection's read buffer: it is valid until the next Receive.
type Message struct {
	Kind MessageKind
	// WALStart is the position of a WAL message.
	WALStart pglogrepl.LSN
	// ServerWALEnd is the server's current end of WAL.
	ServerWALEnd pglogrepl.LSN
	// ReplyRequested is set on a keepalive that wants a status at once.
	ReplyRequested bool
	Data           []byte
}

// Reader is a logical replication stream from the slot. Only one goroutine
// may use it.
type Reader struct {
	conn     *pgconn.PgConn
	slot     string
	log      *slog.Logger
	messages bool
}

// ReaderOptions are what a Reader asks of pgoutput beyond row changes.
type ReaderOptions struct {
	// Messages asks for logical decoding messages (pg_logical_emit_message),
	// which pgoutput sends from PostgreSQL 14 on; older servers are streamed
	// without them (see Reader.Messages).
	Messages bool
	// Binary asks for values in their types' binary send format (pgoutput's
	// binary option, PostgreSQL 14+): Values of kind ValueBinary.
	Binary bool
}

// BinaryMajor is the first PostgreSQL major version whose pgoutput has the
// binary option.
const BinaryMajor = 14

// messagesMajor is the first PostgreSQL major version whose pgoutput sends
// logical decoding messages (the "messages" option).
const messagesMajor = 14

// StartReader opens a replication connection and starts streaming the slot
// from startLSN (0: the slot's confirmed position) with pgoutput protocol
// version 1 over the configured publication.
func StartReader(ctx context.Context, cfg *Config, startLSN pglogrepl.LSN, opts ReaderOptions, log *slog.Logger) (*Reader, error) {
	conn, err := ConnectReplication(ctx, cfg)
	if err != nil {
		return nil, err
	}
	slot, pub := cfg.Advanced.SlotName, cfg.Advanced.PublicationName
	args := []string{"proto_version '1'", "publication_names " + publicationNamesArg(pub)}
	messages := false
	if opts.Messages {
		if v := conn.ParameterStatus("server_version"); parseMajor(v) >= messagesMajor {
			args = append(args, "messages 'true'")
			messages = true
		} else {
			log.Info("logical decoding messages are not captured: pgoutput sends them from PostgreSQL 14 on", "server_version", v)
		}
	}
	if opts.Binary {
		if v := conn.ParameterStatus("server_version"); parseMajor(v) < BinaryMajor {
			_ = conn.Close(context.Background())
			return nil, fmt.Errorf("source.advanced.pgoutputBinary: on needs PostgreSQL %d or later, the server is %s: set it to auto or off", BinaryMajor, v)
		}
		args = append(args, "binary 'true'")
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, startLSN, pglogrepl.StartReplicationOptions{PluginArgs: args})
	if err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("starting replication from slot %q at LSN %s: %w", slot, startLSN, classifyStart(err, slot, pub))
	}
	log.Info("replication started", "slot", slot, "publication", pub, "lsn", startLSN.String(), "messages", messages, "binary", opts.Binary)
	return &Reader{conn: conn, slot: slot, log: log, messages: messages}, nil
}

// publicationNamesArg is pgoutput's publication_names option for the
// publication pub, as a string literal of the replication protocol's
// grammar. pgoutput splits the value as a comma-separated list of
// identifiers (SplitIdentifierString), which folds an unquoted name to
// lower case and ends it at a comma or a space: the name goes in quoted,
// the way Setup and the fixes write it in SQL.
func publicationNamesArg(pub string) string {
	return quoteLiteral(quoteIdent(pub))
}

// Messages reports whether the stream carries logical decoding messages:
// they were asked for and the server can send them.
func (r *Reader) Messages() bool { return r.messages }

// Receive waits for the next replication message until ctx ends. A context
// deadline or cancellation is not an error: it returns a MessageNone and the connection
// stays usable (that is how callers interleave standby status).
func (r *Reader) Receive(ctx context.Context) (Message, error) {
	for {
		msg, err := r.conn.ReceiveMessage(ctx)
		if err != nil {
			// The context watcher interrupts a read by a deadline: the
			// connection stays usable, so an ended ctx is no error.
			if ctx.Err() != nil && (pgconn.Timeout(err) || errors.Is(err, context.Canceled)) {
				return Message{}, nil
			}
			return Message{}, fmt.Errorf("receiving from slot %q: %w", r.slot, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return Message{}, fmt.Errorf("parsing keepalive from slot %q: %w", r.slot, err)
				}
				return Message{Kind: MessageKeepalive, ServerWALEnd: ka.ServerWALEnd, ReplyRequested: ka.ReplyRequested}, nil
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return Message{}, fmt.Errorf("parsing WAL data from slot %q: %w", r.slot, err)
				}
				return Message{Kind: MessageWAL, WALStart: x.WALStart, ServerWALEnd: x.ServerWALEnd, Data: x.WALData}, nil
			}
		case *pgproto3.ErrorResponse:
			return Message{}, fmt.Errorf("replication from slot %q: %w", r.slot, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return Message{}, fmt.Errorf("replication from slot %q: server ended the stream", r.slot)
		}
	}
}

// SendStatus tells the server that everything up to lsn is durable
// downstream: the slot may release the WAL before it.
func (r *Reader) SendStatus(ctx context.Context, lsn pglogrepl.LSN) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
		WALFlushPosition: lsn,
		WALApplyPosition: lsn,
		ClientTime:       time.Now(),
	})
	if err != nil {
		return fmt.Errorf("sending standby status %s to slot %q: %w", lsn, r.slot, err)
	}
	return nil
}

// Close ends the replication connection.
func (r *Reader) Close(ctx context.Context) error {
	return r.conn.Close(ctx)
}

func classifyStart(err error, slot, pub string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42704": // undefined_object: the slot is gone
			return fmt.Errorf("%w: slot %q does not exist (it is created at start when the role may)", err, slot)
		case "55000": // object_not_in_prerequisite_state: invalidated slot
			return fmt.Errorf("%w: %w", ErrSlotInvalidated, err)
		case codeObjectInUse: // another walsender holds the slot
			return fmt.Errorf("%w: %w (a previous pgkafka of this name not yet gone, or another consumer of slot %q)", ErrSlotActive, err, slot)
		}
	}
	return err
}
