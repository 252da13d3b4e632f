package pgsrc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes of a scan gone wrong.
const (
	codeUndefinedTable  = "42P01"
	codeUndefinedColumn = "42703"
)

// Scanner reads tables for backfills on a connection of its own, in key
// order (ChunkEnd, ScanChunk) or, for tables without a key, in ctid order
// (ScanCTID). Values come in the text form pgoutput sends: the connection
// pins the same settings as the replication connection (see ConnConfig).
// Each read is one statement, so it sees one snapshot. Only one goroutine
// may use a Scanner at a time.
type Scanner struct {
	conn    *pgx.Conn
	user    string
	params  [][]byte
	formats []int16 // result formats, when a read asks for binary columns
	row     []Value
}

// OpenScanner connects to the source for backfill reads.
func OpenScanner(ctx context.Context, cfg *Config) (*Scanner, error) {
	conn, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Scanner{conn: conn, user: cfg.User}, nil
}

// Close closes the connection.
func (s *Scanner) Close(ctx context.Context) error { return s.conn.Close(ctx) }

// KeyOrder is NewKeyOrder(t, keyCols) for the queries of this Scanner,
// which leaves COLLATE "C" out on the columns whose own collation is
// already C or POSIX (collate and ctype, libc provider), so that chunk
// queries use the key's index. Other text-like key columns keep COLLATE
// "C": the chunk queries then sort the rest of the table each time, which
// an index on the key columns with COLLATE "C" avoids.
func (s *Scanner) KeyOrder(ctx context.Context, t *Table, keyCols []string) (*KeyOrder, error) {
	rows, err := s.conn.Query(ctx, `SELECT a.attname::text, CASE
		WHEN a.attcollation = 0 THEN false
		WHEN a.attcollation = 100 THEN (
			SELECT COALESCE(to_jsonb(d)->>'datlocprovider', 'c') = 'c' AND d.datcollate IN ('C', 'POSIX') AND d.datctype IN ('C', 'POSIX')
			FROM pg_database d WHERE d.datname = current_database())
		ELSE (
			SELECT c.collprovider = 'c' AND COALESCE(c.collcollate, '') IN ('C', 'POSIX') AND COALESCE(c.collctype, '') IN ('C', 'POSIX')
			FROM pg_collation c WHERE c.oid = a.attcollation)
		END
	FROM pg_attribute a
	WHERE a.attrelid = $1::regclass AND a.attname = ANY($2::text[]) AND NOT a.attisdropped`, t.Ref().Quoted(), keyCols)
	if err != nil {
		return nil, s.scanError("looking up the key collations of", t.Ref(), err)
	}
	byteOrdered := make(map[string]bool, len(keyCols))
	for rows.Next() {
		var name string
		var c *bool
		if err := rows.Scan(&name, &c); err != nil {
			rows.Close()
			return nil, s.scanError("looking up the key collations of", t.Ref(), err)
		}
		byteOrdered[name] = c != nil && *c
	}
	if err := rows.Err(); err != nil {
		return nil, s.scanError("looking up the key collations of", t.Ref(), err)
	}
	return newKeyOrder(t, keyCols, byteOrdered)
}

// ChunkEnd returns the key of the n-th row after the key after (nil: from
// the first row) in key order, with full true. When fewer than n rows
// remain it returns nil and false: the chunk after after is the last, and
// unbounded. The key is the caller's to keep.
func (s *Scanner) ChunkEnd(ctx context.Context, t *Table, o *KeyOrder, after [][]byte, n int) (end [][]byte, full bool, err error) {
	if err := s.checkOrder(t, o); err != nil {
		return nil, false, err
	}
	if n < 1 {
		return nil, false, fmt.Errorf("finding the end of a chunk of %s: chunk size %d, want at least 1", t.Ref(), n)
	}
	var sql strings.Builder
	fmt.Fprintf(&sql, "SELECT %s FROM %s", o.SelectKey(), t.Ref().Quoted())
	s.params = s.params[:0]
	var where []string
	if after != nil {
		where = append(where, o.KeyPredicate(">", 1))
		s.params = append(s.params, after...)
	}
	writeWhere(&sql, t, where)
	fmt.Fprintf(&sql, " ORDER BY %s LIMIT 1 OFFSET %d", o.OrderBy(), n-1)

	rr := s.conn.PgConn().ExecParams(ctx, sql.String(), s.params, nil, nil, nil)
	for rr.NextRow() {
		vals := rr.Values()
		end = make([][]byte, len(vals))
		for i, v := range vals {
			end[i] = bytes.Clone(v)
		}
	}
	if _, err := rr.Close(); err != nil {
		return nil, false, s.scanError("finding the end of a chunk of", t.Ref(), err)
	}
	if end == nil {
		return nil, false, nil
	}
	if err := o.Check(end); err != nil {
		return nil, false, fmt.Errorf("finding the end of a chunk of %s: %w", t.Ref(), err)
	}
	return end, true, nil
}

// ScanChunk calls fn with each row whose key k is after < k <= upTo (after
// nil: from the first row; upTo nil: to the last), in key order, and
// returns how many rows it read. A row holds the columns pgoutput sends
// (Column.Sent: the live columns that are neither generated nor left out
// by the publication's column list, in attnum order: the order of the
// table's Relation message), each in the text form pgoutput prints
// (ValueText), or ValueNull; o.Key extracts the key of a row.
//
// Every read (ChunkEnd, ScanChunk, ScanCTID, EstimateAfter) sees only the
// rows that the table's RowFilter passes, if it has one.
//
// The row and its values alias buffers that are valid only during the
// call: fn must copy what it keeps. An error from fn stops the scan (the
// rest of the result is read and dropped) and is returned as is.
func (s *Scanner) ScanChunk(ctx context.Context, t *Table, o *KeyOrder, after, upTo [][]byte, binary []bool, fn func(row []Value) error) (rows int, err error) {
	if err := s.checkOrder(t, o); err != nil {
		return 0, err
	}
	var sql strings.Builder
	fmt.Fprintf(&sql, "SELECT %s FROM %s", strings.Join(o.selects, ", "), t.Ref().Quoted())
	s.params = s.params[:0]
	var where []string
	if after != nil {
		where = append(where, o.KeyPredicate(">", 1))
		s.params = append(s.params, after...)
	}
	if upTo != nil {
		where = append(where, o.KeyPredicate("<=", len(s.params)+1))
		s.params = append(s.params, upTo...)
	}
	writeWhere(&sql, t, where)
	sql.WriteString(" ORDER BY " + o.OrderBy())
	return s.scan(ctx, sql.String(), t.Ref(), "reading a chunk of", false, binary, func(_ []byte, row []Value) error { return fn(row) })
}

// ScanCTID reads a table without a key: it calls fn with at most n rows
// whose ctid is after after ("" : from the first row), in ctid order, and
// returns the ctid of the last row read ("" if none) and how many rows it
// read. Rows are as ScanChunk's, and so is the lifetime of ctid and row.
// Fewer than n rows means the table is read to its end. On PostgreSQL 14
// and later a call reads windows of pages, each in a statement of its own. A partitioned
// table cannot be read this way: ctids repeat across its partitions.
func (s *Scanner) ScanCTID(ctx context.Context, t *Table, after string, n int, binary []bool, fn func(ctid string, row []Value) error) (last string, rows int, err error) {
	if t.Kind == 'p' {
		return "", 0, fmt.Errorf("reading %s by ctid: it is a partitioned table, whose partitions repeat ctids: give it a primary key or list it in source.advanced.skip_backfills", t.Ref())
	}
	if n < 1 {
		return "", 0, fmt.Errorf("reading %s by ctid: chunk size %d, want at least 1", t.Ref(), n)
	}
	var sql strings.Builder
	sql.WriteString("SELECT ctid")
	for i := range t.Columns {
		if c := &t.Columns[i]; c.Sent() {
			sql.WriteString(", " + quoteIdent(c.Name))
		}
	}
	fmt.Fprintf(&sql, " FROM %s", t.Ref().Quoted())
	writeWhere(&sql, t, []string{"ctid > $1::tid"})
	cursor := after
	if cursor == "" {
		cursor = "(0,0)"
	}
	var lastCTID []byte
	read := func(sql string, params ...string) (int, error) {
		s.params = s.params[:0]
		for _, p := range params {
			s.params = append(s.params, []byte(p))
		}
		return s.scan(ctx, sql, t.Ref(), "reading by ctid", true, binary, func(ctid []byte, row []Value) error {
			lastCTID = append(lastCTID[:0], ctid...)
			return fn(string(ctid), row)
		})
	}
	if serverMajor(s.conn) < 14 {
		// No TID range scans: one query, which sorts the rest of the table.
		rows, err = read(sql.String()+" ORDER BY ctid LIMIT "+strconv.Itoa(n), cursor)
		return string(lastCTID), rows, err
	}
	// Windows of pages, read with TID range scans and sorted apart, so
	// each query reads about n rows and not the rest of the table. The
	// window grows while it comes back short.
	var blocks int64
	if err := s.conn.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int8`, t.Ref().Quoted()).Scan(&blocks); err != nil {
		return "", 0, s.scanError("reading by ctid", t.Ref(), err)
	}
	var block int64
	if _, err := fmt.Sscanf(cursor, "(%d,", &block); err != nil {
		return "", 0, fmt.Errorf("reading %s by ctid: cursor %q is not a ctid", t.Ref(), after)
	}
	window := max(1, int64(n)/32)
	windowed := sql.String() + " AND ctid < $2::tid ORDER BY ctid LIMIT "
	for rows < n {
		end := block + window
		got, err := read(windowed+strconv.Itoa(n-rows), cursor, fmt.Sprintf("(%d,0)", end))
		rows += got
		if err != nil {
			return string(lastCTID), rows, err
		}
		if rows == n || end >= blocks {
			break
		}
		// Offset 0 is no tuple's: "> (end,0)" starts at the window's end.
		cursor, block, window = fmt.Sprintf("(%d,0)", end), end, window*2
	}
	return string(lastCTID), rows, nil
}

// scan runs a query of text parameters s.params and calls fn with each
// row; withCTID: the first column is the ctid, given apart. binary[i]
// asks for the i-th column (after the ctid) in its type's binary send
// format (a ValueBinary); nil, every column in text.
func (s *Scanner) scan(ctx context.Context, sql string, table TableRef, op string, withCTID bool, binary []bool, fn func(ctid []byte, row []Value) error) (int, error) {
	var formats []int16
	if slices.Contains(binary, true) {
		formats = s.formats[:0]
		if withCTID {
			formats = append(formats, pgx.TextFormatCode)
		}
		for _, b := range binary {
			if b {
				formats = append(formats, pgx.BinaryFormatCode)
			} else {
				formats = append(formats, pgx.TextFormatCode)
			}
		}
		s.formats = formats
	}
	rr := s.conn.PgConn().ExecParams(ctx, sql, s.params, nil, nil, formats)
	rows := 0
	var fnErr error
	for fnErr == nil && rr.NextRow() {
		vals := rr.Values()
		var ctid []byte
		if withCTID {
			ctid, vals = vals[0], vals[1:]
		}
		s.row = s.row[:0]
		for i, v := range vals {
			switch {
			case v == nil:
				s.row = append(s.row, Value{Kind: ValueNull})
			case i < len(binary) && binary[i]:
				s.row = append(s.row, Value{Kind: ValueBinary, Data: v})
			default:
				s.row = append(s.row, Value{Kind: ValueText, Data: v})
			}
		}
		rows++
		fnErr = fn(ctid, s.row)
	}
	_, err := rr.Close()
	if fnErr != nil {
		return rows, fnErr
	}
	if err != nil {
		return rows, s.scanError(op, table, err)
	}
	return rows, nil
}

func (s *Scanner) checkOrder(t *Table, o *KeyOrder) error {
	if o.table != t.Ref() {
		return fmt.Errorf("reading %s with the key order of %s", t.Ref(), o.table)
	}
	return nil
}

// scanError explains a failed read, saying what fixes it when it can.
func (s *Scanner) scanError(op string, table TableRef, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeUndefinedTable:
			return fmt.Errorf("%s %s: %w", op, table, &TableNotFoundError{Table: table, User: s.user})
		case codeInsufficientPrivilege:
			return fmt.Errorf("%s %s: %w (%w): run %s", op, table, ErrNotPermitted, err, GrantSelectSQL(table, s.user))
		case codeUndefinedColumn:
			return fmt.Errorf("%s %s: %s: the table changed since it was described; describe it again: %w", op, table, pgErr.Message, err)
		}
	}
	return fmt.Errorf("%s %s: %w", op, table, err)
}

// EstimateAfter returns the planner's estimate of the rows of t after a
// backfill cursor: after the key after (o non-nil), or after the ctid
// afterCTID (o nil), from the table's statistics, without reading it. It
// is what progress reports use for a backfill resumed from its cursor.
func (s *Scanner) EstimateAfter(ctx context.Context, t *Table, o *KeyOrder, after [][]byte, afterCTID string) (int64, error) {
	var sql strings.Builder
	fmt.Fprintf(&sql, "SELECT 1 FROM %s", t.Ref().Quoted())
	s.params = s.params[:0]
	switch {
	case o != nil:
		if err := s.checkOrder(t, o); err != nil {
			return 0, err
		}
		writeWhere(&sql, t, []string{o.KeyPredicate(">", 1)})
		s.params = append(s.params, after...)
	default:
		writeWhere(&sql, t, []string{"ctid > $1::tid"})
		s.params = append(s.params, []byte(afterCTID))
	}
	n, err := estimateRows(ctx, s.conn, sql.String(), s.params...)
	if err != nil {
		return 0, s.scanError("estimating the rows left to backfill of", t.Ref(), err)
	}
	return n, nil
}

// writeWhere writes the WHERE clause of the predicates where and the
// table's row filter, if any.
func writeWhere(sql *strings.Builder, t *Table, where []string) {
	if t.RowFilter != "" {
		where = append(where, "("+t.RowFilter+")")
	}
	if t.BackfillWhere != "" {
		// A new line before the closing parenthesis: nothing of the
		// condition (CheckCondition refuses comments anyway) hides it.
		where = append(where, "("+t.BackfillWhere+"\n)")
	}
	if len(where) > 0 {
		sql.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
}

// IndexAdvice tells whether t's chunk queries in order o walk an index or
// sort the rest of the table each time (a text key in a collation that is
// not C, without an index in byte order), from the planner's plan of the
// first chunk's query. When they sort, it returns the CREATE INDEX that
// lets them walk an index instead; "" otherwise.
func (s *Scanner) IndexAdvice(ctx context.Context, t *Table, o *KeyOrder, n int) (string, error) {
	if !o.Collated() {
		return "", nil
	}
	var sql strings.Builder
	fmt.Fprintf(&sql, "EXPLAIN (FORMAT JSON) SELECT %s FROM %s", o.SelectKey(), t.Ref().Quoted())
	s.params = s.params[:0]
	writeWhere(&sql, t, nil)
	fmt.Fprintf(&sql, " ORDER BY %s LIMIT 1 OFFSET %d", o.OrderBy(), max(0, n-1))
	var plan string
	if err := s.conn.QueryRow(ctx, sql.String()).Scan(&plan); err != nil {
		return "", s.scanError("planning the chunk queries of", t.Ref(), err)
	}
	if !strings.Contains(plan, `"Node Type": "Sort"`) && !strings.Contains(plan, `"Node Type": "Incremental Sort"`) {
		return "", nil
	}
	return fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (%s);", t.Ref().Quoted(), o.OrderBy()), nil
}

// CheckCondition refuses a backfill condition (Table.BackfillWhere) that
// could reach out of the parentheses it is put in: an unbalanced
// parenthesis, a ';', a comment, a dollar-quoted string or a literal left
// open. What it passes is run as given, with the capture role's rights.
func CheckCondition(cond string) error {
	if strings.TrimSpace(cond) == "" {
		return errors.New("the condition is empty")
	}
	depth := 0
	for i := 0; i < len(cond); i++ {
		switch c := cond[i]; c {
		case '\'', '"':
			// E'...' strings escape with a backslash; others double the quote.
			escapes := c == '\'' && i > 0 && (cond[i-1] == 'E' || cond[i-1] == 'e') && (i == 1 || !isIdentByte(cond[i-2]))
			j := i + 1
			for ; j < len(cond); j++ {
				if escapes && cond[j] == '\\' {
					j++
					continue
				}
				if cond[j] == c {
					if j+1 < len(cond) && cond[j+1] == c {
						j++
						continue
					}
					break
				}
			}
			if j >= len(cond) {
				return fmt.Errorf("a %c opened at byte %d is not closed", c, i+1)
			}
			i = j
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return fmt.Errorf("the ')' at byte %d closes a parenthesis the condition did not open", i+1)
			}
		case ';':
			return errors.New("it holds a ';': give one condition, not statements")
		case '-', '/':
			if i+1 < len(cond) && (c == '-' && cond[i+1] == '-' || c == '/' && cond[i+1] == '*') {
				return errors.New("it holds a comment (-- or /*): remove it")
			}
		case '$':
			if i == 0 || !isIdentByte(cond[i-1]) {
				return errors.New("it holds a '$' (a dollar-quoted string or a parameter): use a '...' literal")
			}
		}
	}
	if depth > 0 {
		return fmt.Errorf("%d parenthesis left open", depth)
	}
	return nil
}

func isIdentByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b >= 0x80
}

// CheckWhere checks that cond (a backfill condition, CheckCondition) is
// a condition PostgreSQL accepts on t: EXPLAIN of a query with it, which
// plans without reading. A condition refused is a *ConditionError, which
// names the table and the condition.
func (s *Scanner) CheckWhere(ctx context.Context, t TableRef, cond string) error {
	if err := CheckCondition(cond); err != nil {
		return &ConditionError{Table: t, Cond: cond, Err: err}
	}
	sql := "EXPLAIN SELECT 1 FROM " + t.Quoted() + " WHERE (" + cond + "\n)"
	rows, err := s.conn.Query(ctx, sql)
	if err == nil {
		for rows.Next() {
		}
		rows.Close()
		err = rows.Err()
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == codeUndefinedTable:
		return &ConditionError{Table: t, Cond: cond, Err: &TableNotFoundError{Table: t, User: s.user}}
	case errors.As(err, &pgErr):
		return &ConditionError{Table: t, Cond: cond, Err: fmt.Errorf("PostgreSQL refuses it: %w", err)}
	}
	return fmt.Errorf("checking the backfill condition %q on %s: %w", cond, t, err)
}

// ConditionError is a backfill condition refused, on a table.
type ConditionError struct {
	Table TableRef
	Cond  string
	Err   error
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("backfill condition %q on %s: %v", e.Cond, e.Table, e.Err)
}

func (e *ConditionError) Unwrap() error { return e.Err }
