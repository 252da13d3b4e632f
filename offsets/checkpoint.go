// Package offsets holds pgkafka's checkpoint: how far the capture has
// reached, kept in a compacted Kafka topic (one record per connector name)
// and written inside the same Kafka transaction as the data it covers, so
// the two never disagree.
package offsets

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pglogrepl"
)

// Version is the checkpoint format written.
const Version = 1

// State is a table's capture state.
type State string

// Table states.
const (
	StateStreaming   State = "streaming"
	StateBackfilling State = "backfilling"
	StateSkipped     State = "skipped"
	// StateDropped: the table was dropped; its changes committed before
	// the drop are in Kafka once the checkpoint's LSN reaches DroppedAt.
	StateDropped State = "dropped"
)

// Checkpoint is the capture's progress. The zero value is "nothing yet".
type Checkpoint struct {
	// LSN is where streaming resumes: the end of the last PostgreSQL
	// transaction wholly in Kafka, or a position the server reported when
	// nothing before it was left to capture. Every change below it is in
	// Kafka; a change at or below it that PostgreSQL sends again is dropped.
	LSN pglogrepl.LSN
	// CommitTime is the commit time of the last transaction captured, for
	// the lag in seconds.
	CommitTime time.Time
	// Partial marks a transaction larger than kafka.maxTransactionRecords
	// that is partly in Kafka: its first Changes changes are.
	Partial *Partial
	// Tables holds each captured table's state, by "<schema>.<table>".
	Tables map[string]TableState
	// SlotLost records the last replication slot lost while this
	// checkpoint existed and re-created under source.advanced.onSlotLost:
	// rebackfill; nil when none was. It stays as a record; the tables
	// still to be backfilled again carry TableState.Purge.
	SlotLost *SlotLost
	// UpdatedAt is when the checkpoint was written.
	UpdatedAt time.Time
}

// SlotLost is a replication slot found lost, and re-created.
type SlotLost struct {
	Slot string `json:"slot"`
	// LSN is the checkpoint's LSN when the slot was found lost: the
	// changes after it were never read.
	LSN pglogrepl.LSN `json:"-"`
	// At is when it was found lost.
	At time.Time `json:"at"`
	// Pending: the checkpoint was written before the new slot was made;
	// its LSN is still the old one, and the next session makes the slot
	// again.
	Pending bool `json:"pending,omitempty"`
}

// jsonSlotLost is a SlotLost in the offsets topic's form.
type jsonSlotLost struct {
	SlotLost
	LSN string `json:"lsn"`
}

// Partial is the part of one transaction already in Kafka.
type Partial struct {
	// CommitLSN is the transaction's commit LSN, known from its begin.
	CommitLSN pglogrepl.LSN
	Xid       uint32
	// Changes counts its changes (inserts, updates, deletes, truncates,
	// transactional logical decoding messages) whose records are in Kafka.
	Changes int64
	// Events counts, by "<schema>.<table>", the change records of those
	// changes (format.transactionMetadata: its event counts and orders go
	// on from them); nil when the option was off or none was written.
	Events map[string]int64
}

// TableState is one table's capture state.
type TableState struct {
	State State
	// Cursor is the backfill's last key read, in the backfill's encoding.
	Cursor json.RawMessage
	// Where, in StateBackfilling, is the condition of a filtered backfill
	// (`pgkafka backfill --where`): only the rows it passes are read. ""
	// reads them all.
	Where string
	// OID is the table's relation ID (pg_class.oid) when the state was
	// written; 0 when unknown (a checkpoint written before it was kept). A
	// table of the same name under another ID is another table: the first
	// was dropped, and this one created since.
	OID uint32
	// DroppedAt, in StateDropped, is a WAL position the DROP committed
	// before: every change of the table is below it.
	DroppedAt pglogrepl.LSN
	// Purge, in StateBackfilling, marks a backfill after a lost slot: at
	// its end, the keys its topic holds that the table no longer has are
	// removed (a delete and a tombstone each). With PurgeKeys, only
	// those keys may be removed: a repair (`pgkafka verify --repair`),
	// whose Where reads each of them.
	Purge bool
	// PurgeKeys, with Purge, are the keys (their Avro bytes without the
	// registry's framing, base64) of the topic that the backfill's end
	// removes if neither the backfill nor the stream met them.
	PurgeKeys []string
}

// DropCaptured reports whether st is a dropped table's whose changes a
// checkpoint at lsn holds, every one.
func (st TableState) DropCaptured(lsn pglogrepl.LSN) bool {
	return st.State == StateDropped && lsn >= st.DroppedAt
}

// jsonTableState is a TableState in the offsets topic's form.
type jsonTableState struct {
	State     State           `json:"state"`
	Cursor    json.RawMessage `json:"cursor,omitempty"`
	Where     string          `json:"where,omitempty"`
	OID       uint32          `json:"oid,omitempty"`
	DroppedAt string          `json:"droppedAt,omitempty"`
	Purge     bool            `json:"purgeAfterBackfill,omitempty"`
	PurgeKeys []string        `json:"purgeKeys,omitempty"`
}

// MarshalJSON writes the offsets topic's form: the LSN as PostgreSQL
// prints it.
func (st TableState) MarshalJSON() ([]byte, error) {
	j := jsonTableState{State: st.State, Cursor: st.Cursor, Where: st.Where, OID: st.OID, Purge: st.Purge, PurgeKeys: st.PurgeKeys}
	if st.State == StateDropped {
		j.DroppedAt = st.DroppedAt.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the offsets topic's form; oid and droppedAt are
// optional (checkpoints written before them lack them).
func (st *TableState) UnmarshalJSON(b []byte) error {
	var j jsonTableState
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*st = TableState{State: j.State, Cursor: j.Cursor, Where: j.Where, OID: j.OID, Purge: j.Purge, PurgeKeys: j.PurgeKeys}
	if j.DroppedAt != "" {
		lsn, err := pglogrepl.ParseLSN(j.DroppedAt)
		if err != nil {
			return fmt.Errorf("table droppedAt %q: %w", j.DroppedAt, err)
		}
		st.DroppedAt = lsn
	}
	if st.State == StateDropped && j.DroppedAt == "" {
		return fmt.Errorf("table state %q without droppedAt", st.State)
	}
	return nil
}

// Clone returns a deep copy.
func (c *Checkpoint) Clone() *Checkpoint {
	if c == nil {
		return nil
	}
	out := *c
	if c.Partial != nil {
		p := *c.Partial
		p.Events = maps.Clone(p.Events)
		out.Partial = &p
	}
	out.Tables = maps.Clone(c.Tables)
	if c.SlotLost != nil {
		l := *c.SlotLost
		out.SlotLost = &l
	}
	return &out
}

// jsonCheckpoint is the human-readable form in the offsets topic: LSNs are
// written as PostgreSQL prints them.
type jsonCheckpoint struct {
	Version    int                   `json:"version"`
	LSN        string                `json:"lsn"`
	CommitTime *time.Time            `json:"commitTime,omitempty"`
	Partial    *jsonPartial          `json:"partial,omitempty"`
	Tables     map[string]TableState `json:"tables,omitempty"`
	SlotLost   *jsonSlotLost         `json:"slotLost,omitempty"`
	UpdatedAt  time.Time             `json:"updatedAt"`
}

type jsonPartial struct {
	CommitLSN string           `json:"commitLsn"`
	Xid       uint32           `json:"xid"`
	Changes   int64            `json:"changes"`
	Events    map[string]int64 `json:"events,omitempty"` // absent before format.transactionMetadata
}

// MarshalJSON writes the offsets topic's form.
func (c *Checkpoint) MarshalJSON() ([]byte, error) {
	j := jsonCheckpoint{Version: Version, LSN: c.LSN.String(), Tables: c.Tables, UpdatedAt: c.UpdatedAt.UTC()}
	if !c.CommitTime.IsZero() {
		t := c.CommitTime.UTC()
		j.CommitTime = &t
	}
	if p := c.Partial; p != nil {
		j.Partial = &jsonPartial{CommitLSN: p.CommitLSN.String(), Xid: p.Xid, Changes: p.Changes, Events: p.Events}
	}
	if l := c.SlotLost; l != nil {
		j.SlotLost = &jsonSlotLost{SlotLost: *l, LSN: l.LSN.String()}
		j.SlotLost.At = l.At.UTC()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the offsets topic's form.
func (c *Checkpoint) UnmarshalJSON(b []byte) error {
	var j jsonCheckpoint
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Version != Version {
		return fmt.Errorf("checkpoint version %d: this pgkafka reads version %d", j.Version, Version)
	}
	lsn, err := pglogrepl.ParseLSN(j.LSN)
	if err != nil {
		return fmt.Errorf("checkpoint lsn %q: %w", j.LSN, err)
	}
	*c = Checkpoint{LSN: lsn, Tables: j.Tables, UpdatedAt: j.UpdatedAt}
	if j.CommitTime != nil {
		c.CommitTime = *j.CommitTime
	}
	if l := j.SlotLost; l != nil {
		lsn, err := pglogrepl.ParseLSN(l.LSN)
		if err != nil {
			return fmt.Errorf("checkpoint slotLost.lsn %q: %w", l.LSN, err)
		}
		sl := l.SlotLost
		sl.LSN = lsn
		c.SlotLost = &sl
	}
	if p := j.Partial; p != nil {
		commit, err := pglogrepl.ParseLSN(p.CommitLSN)
		if err != nil {
			return fmt.Errorf("checkpoint partial.commitLsn %q: %w", p.CommitLSN, err)
		}
		if p.Changes < 1 {
			return fmt.Errorf("checkpoint partial.changes %d: want at least 1", p.Changes)
		}
		for t, n := range p.Events {
			if n < 0 {
				return fmt.Errorf("checkpoint partial.events[%q] %d: want at least 0", t, n)
			}
		}
		c.Partial = &Partial{CommitLSN: commit, Xid: p.Xid, Changes: p.Changes, Events: p.Events}
	}
	return nil
}
