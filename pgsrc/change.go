package pgsrc

import (
	"time"

	"github.com/jackc/pglogrepl"
)

// Op is the kind of a decoded change.
type Op uint8

// The kinds of change the decoder produces.
const (
	OpBegin Op = iota + 1
	OpCommit
	OpInsert
	OpUpdate
	OpDelete
	OpTruncate
	// OpRelation announces a relation's (possibly new) shape. It carries no row.
	OpRelation
	// OpMessage is a logical decoding message (pg_logical_emit_message,
	// PostgreSQL 14+): Transactional, Prefix and Content.
	OpMessage
)

func (o Op) String() string {
	switch o {
	case OpBegin:
		return "begin"
	case OpCommit:
		return "commit"
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	case OpRelation:
		return "relation"
	case OpMessage:
		return "message"
	}
	return "unknown"
}

// Value kinds, as pgoutput sends them.
const (
	ValueNull      = 'n' // SQL NULL
	ValueUnchanged = 'u' // an unchanged TOASTed value, not sent
	ValueText      = 't' // text form in Data
	ValueBinary    = 'b' // binary form in Data
)

// Value is one column of a tuple. Data aliases the WAL message it was
// decoded from: it is valid as long as that message's buffer is.
type Value struct {
	Kind byte
	Data []byte
}

// Relation is a table's shape as the replication stream describes it.
type Relation struct {
	ID              uint32
	Namespace, Name string
	// ReplicaIdentity is 'd' (default: primary key), 'n' (nothing),
	// 'f' (full) or 'i' (an index).
	ReplicaIdentity byte
	Columns         []RelationColumn
	// Version counts the Relation messages seen for this ID, from 1.
	Version int
}

// RelationColumn is a column of a Relation.
type RelationColumn struct {
	Name    string
	TypeOID uint32
	TypeMod int32
	// Key marks the columns of the replica identity (the primary key by default).
	Key bool
}

// KeyColumns returns the indexes of the replica identity columns.
func (r *Relation) KeyColumns() []int {
	var idx []int
	for i, c := range r.Columns {
		if c.Key {
			idx = append(idx, i)
		}
	}
	return idx
}

// Change is one decoded replication message.
type Change struct {
	Op Op
	// LSN is the WAL position of the message (for a commit: the commit record).
	LSN pglogrepl.LSN
	// EndLSN is, for a commit, the end of the transaction: the position to
	// confirm once everything before it is durable downstream.
	EndLSN pglogrepl.LSN
	// Xid, CommitLSN and CommitTime are those of the enclosing transaction:
	// its begin message announces its commit's LSN and time.
	Xid        uint32
	CommitLSN  pglogrepl.LSN
	CommitTime time.Time
	// Rel is the relation of a row change or of OpRelation.
	Rel *Relation
	// Old is the before image of an update or delete: the key columns when
	// OldKind is 'K', every column when 'O', nil when absent.
	Old     []Value
	OldKind byte
	// New is the row after an insert or update.
	New []Value
	// Truncated lists the relations of a truncate.
	Truncated []*Relation
	// Cascade and RestartIdentity are the truncate's options.
	Cascade, RestartIdentity bool
	// Transactional tells a message emitted as part of its transaction
	// (sent between its begin and commit, and only if it commits) from one
	// emitted at once (sent outside any transaction, committed or not: its
	// Xid, CommitLSN and CommitTime are zero).
	Transactional bool
	// Prefix and Content are a message's; like Values they alias the WAL
	// message.
	Prefix, Content []byte
}
