package pgsrc

import (
	"fmt"
	"strings"
)

// The SQL that meets each prerequisite, run by a superuser or the owner of
// the objects involved. `pgkafka check` prints them; PrerequisiteError
// carries them. Identifiers are quoted.

// WALLevelFix sets wal_level to logical.
func WALLevelFix() string {
	return "ALTER SYSTEM SET wal_level = logical;\n" +
		"-- then restart PostgreSQL. On Amazon RDS or Aurora set rds.logical_replication = 1 in the DB parameter group and reboot;\n" +
		"-- on Cloud SQL set the flag cloudsql.logical_decoding = on."
}

// GrantReplicationSQL gives user the right to replicate.
func GrantReplicationSQL(user string) string {
	return fmt.Sprintf("ALTER ROLE %s WITH REPLICATION;\n-- on Amazon RDS or Aurora instead: GRANT rds_replication TO %s;",
		quoteIdent(user), quoteIdent(user))
}

// CreateWatermarksSQL creates the watermarks table and lets user write it.
func CreateWatermarksSQL(table TableRef, user string) string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (slot TEXT PRIMARY KEY, watermark TEXT);\n%s",
		table.Quoted(), GrantWatermarksSQL(table, user))
}

// GrantWatermarksSQL lets user write the watermarks table.
func GrantWatermarksSQL(table TableRef, user string) string {
	return fmt.Sprintf("GRANT ALL PRIVILEGES ON TABLE %s TO %s;", table.Quoted(), quoteIdent(user))
}

// CreatePublicationSQL creates the publication of tables, published through
// their partition roots (PostgreSQL 13 and later).
func CreatePublicationSQL(publication string, tables []TableRef) string {
	return createPublicationSQL(publication, tables, true)
}

func createPublicationSQL(publication string, tables []TableRef, viaRoot bool) string {
	var with string
	if viaRoot {
		with = " WITH (publish_via_partition_root = true)"
	}
	return fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s%s;", quoteIdent(publication), quotedList(tables), with)
}

// SetViaRootSQL makes the publication publish partitions' changes as their
// root table's (PostgreSQL 13 and later).
func SetViaRootSQL(publication string) string {
	return fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true);", quoteIdent(publication))
}

// AddTablesSQL adds tables to the publication.
func AddTablesSQL(publication string, tables []TableRef) string {
	return fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s;", quoteIdent(publication), quotedList(tables))
}

// GrantSelectSQL lets user read table.
func GrantSelectSQL(table TableRef, user string) string {
	return fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT ON TABLE %s TO %s;",
		quoteIdent(table.Schema), quoteIdent(user), table.Quoted(), quoteIdent(user))
}

// DropSlotSQL drops the replication slot.
func DropSlotSQL(slot string) string {
	return fmt.Sprintf("SELECT pg_drop_replication_slot(%s);", quoteLiteral(slot))
}

func quotedList(tables []TableRef) string {
	q := make([]string, len(tables))
	for i, t := range tables {
		q[i] = t.Quoted()
	}
	return strings.Join(q, ", ")
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
