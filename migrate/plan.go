package migrate

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// StepKind names what a Step does.
type StepKind string

// The kinds of Step. CreateTable, AddColumn and CreateIndex are additive.
// DropIndex removes an index whose definition (columns or uniqueness)
// differs from the model's, right before a CreateIndex step recreates it;
// as both run in one transaction it loses nothing and is not destructive.
// DropColumn and AlterType are destructive. UpgradeData is a data
// upgrade (see Upgrade): it changes rows, not the schema, and has no SQL
// of its own to print.
const (
	CreateTable StepKind = "create table"
	AddColumn   StepKind = "add column"
	CreateIndex StepKind = "create index"
	DropIndex   StepKind = "drop index"
	DropColumn  StepKind = "drop column"
	AlterType   StepKind = "alter column type"
	UpgradeData StepKind = "upgrade data"
)

// Step is one change to a table.
type Step struct {
	Kind        StepKind
	Table       string
	Name        string // the column or index, empty for CreateTable
	SQL         string // empty when the dialect cannot do it (see Note)
	Destructive bool
	// Breaks marks a destructive step without which the model's own
	// statements fail on the live table: a changed type, or a column the
	// model lacks that is NOT NULL with no default, so that every insert
	// of the model fails. Dropping a column that is nullable or has a
	// default does not break the model: a table with such an extra column
	// is the normal state of a rolling deploy, where a newer program added
	// a column an older one does not know.
	Breaks bool
	Note   string
}

// Plan is the difference between a model and its live table.
type Plan struct {
	Table    string
	Checksum string // of the model
	Exists   bool   // whether the table existed when planned
	Steps    []Step
}

// Additive returns the steps that never lose data.
func (p *Plan) Additive() []Step { return p.filter(false) }

// Destructive returns the steps that may lose data; Apply runs them only
// when forced.
func (p *Plan) Destructive() []Step { return p.filter(true) }

func (p *Plan) filter(destructive bool) []Step {
	var out []Step
	for _, s := range p.Steps {
		if s.Destructive == destructive {
			out = append(out, s)
		}
	}
	return out
}

// Empty reports whether the table already matches the model.
func (p *Plan) Empty() bool { return len(p.Steps) == 0 }

// SQL returns the plan as a script for a dry run: additive statements as
// they would run, destructive ones commented out.
func (p *Plan) SQL() string {
	var b strings.Builder
	for _, s := range p.Steps {
		switch {
		case s.Kind == UpgradeData:
			fmt.Fprintf(&b, "-- data upgrade %s, in batches under the migration lock (migrate up, or the first use): %s\n", s.Name, s.Note)
		case s.Destructive && s.SQL == "":
			fmt.Fprintf(&b, "-- destructive, not supported here: %s %s.%s (%s)\n", s.Kind, s.Table, s.Name, s.Note)
		case s.Destructive:
			fmt.Fprintf(&b, "-- destructive, runs only when forced:\n-- %s;\n", s.SQL)
		default:
			b.WriteString(s.SQL)
			b.WriteString(";\n")
		}
	}
	return b.String()
}

// Plan inspects the model's table and returns the steps that would bring it
// in line with the model. It changes nothing.
func (m *Migrator) Plan(ctx context.Context, model Model) (*Plan, error) {
	return m.plan(ctx, m.db, model)
}

func (m *Migrator) plan(ctx context.Context, c bun.IConn, model Model) (*Plan, error) {
	t, err := m.table(model)
	if err != nil {
		return nil, err
	}
	ti, err := m.inspect(ctx, c, t.Name)
	if err != nil {
		return nil, err
	}
	if err := m.setup(ctx, c); err != nil {
		return nil, err
	}
	return m.diff(t, model, ti)
}

func (m *Migrator) diff(t *schema.Table, model Model, ti *TableInfo) (*Plan, error) {
	indexes := model.Indexes
	p := &Plan{Table: t.Name, Checksum: checksum(m.d, t, model), Exists: ti.Exists}
	if !ti.Exists && m.ddl.createTable != nil {
		p.Steps = append(p.Steps, Step{Kind: CreateTable, Table: t.Name, SQL: m.ddl.createTable(m, t)})
	} else if !ti.Exists {
		b, err := m.db.NewCreateTable().Model(t.ZeroIface).IfNotExists().AppendQuery(m.db.QueryGen(), nil)
		if err != nil {
			return nil, fmt.Errorf("plan table %q: %w", t.Name, err)
		}
		if model.WithoutRowID && m.d.WithoutRowID() {
			b = append(b, " WITHOUT ROWID"...)
		}
		p.Steps = append(p.Steps, Step{Kind: CreateTable, Table: t.Name, SQL: string(b)})
	} else {
		for _, f := range t.Fields {
			col, ok := ti.column(f.Name)
			if !ok {
				p.Steps = append(p.Steps, m.addColumn(t, f))
				continue
			}
			if m.d.NormType(col.Type) != m.d.NormType(m.modelType(f)) {
				p.Steps = append(p.Steps, m.alterType(t, f, col))
			} else if live, model, ok := varcharLengths(col.Type, m.modelType(f)); m.d.EnforcesVarcharLength() && ok && live < model {
				p.Steps = append(p.Steps, m.widen(t, f, col))
			}
		}
		for _, col := range ti.Columns {
			if !sqlcore.HasColumn(t, col.Name) {
				s := Step{
					Kind: DropColumn, Table: t.Name, Name: col.Name, Destructive: true,
					SQL:  fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", m.ident(t.Name), m.ident(col.Name)),
					Note: "the model has no such column",
				}
				if col.NotNull && !col.HasDefault {
					s.Breaks = true
					s.Note += "; it is NOT NULL without a default, so inserts of the model fail"
				}
				p.Steps = append(p.Steps, s)
			}
		}
	}
	for _, ix := range indexes {
		if live, ok := ti.index(ix.Name); ok {
			if live.Unique == ix.Unique && slices.Equal(live.Columns, ix.Columns) {
				continue
			}
			drop := "DROP INDEX " + m.ident(ix.Name)
			if m.ddl.dropIndexOn {
				drop += " ON " + m.ident(t.Name)
			}
			p.Steps = append(p.Steps, Step{
				Kind: DropIndex, Table: t.Name, Name: ix.Name,
				SQL: drop,
				Note: fmt.Sprintf("live index unique=%t on (%s); recreated as unique=%t on (%s)",
					live.Unique, strings.Join(live.Columns, ", "), ix.Unique, strings.Join(ix.Columns, ", ")),
			})
		}
		cols := make([]string, len(ix.Columns))
		for i, c := range ix.Columns {
			cols[i] = m.ident(c)
		}
		unique := ""
		if ix.Unique {
			unique = "UNIQUE "
		}
		ifNotExists := "IF NOT EXISTS "
		if m.ddl.noIndexIfNotExists {
			ifNotExists = "" // the plan creates only what inspect did not find
		}
		where := ""
		if ix.Where != "" && !m.ddl.noPartialIndex {
			where = " WHERE " + ix.Where
		}
		p.Steps = append(p.Steps, Step{
			Kind: CreateIndex, Table: t.Name, Name: ix.Name,
			SQL: fmt.Sprintf("CREATE %sINDEX %s%s ON %s (%s)%s",
				unique, ifNotExists, m.ident(ix.Name), m.ident(t.Name), strings.Join(cols, ", "), where),
		})
	}
	p.Steps = append(p.Steps, m.droppedSteps(t, model, ti)...)
	return p, nil
}

func (m *Migrator) addColumn(t *schema.Table, f *schema.Field) Step {
	if m.ddl.addColumn != nil {
		return Step{Kind: AddColumn, Table: t.Name, Name: f.Name, SQL: m.ddl.addColumn(m, t, f)}
	}
	def := f.CreateTableSQLType
	switch {
	case f.SQLDefault != "":
		if f.NotNull {
			def += " NOT NULL"
		}
		def += " DEFAULT " + f.SQLDefault
	case f.NotNull:
		// Existing rows need a value: use the type's zero, or leave the
		// column nullable when the type has none we know.
		if z := zeroDefault(m.d.NormType(f.CreateTableSQLType)); z != "" {
			def += " NOT NULL DEFAULT " + z
		}
	}
	return Step{
		Kind: AddColumn, Table: t.Name, Name: f.Name,
		SQL: fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", m.ident(t.Name), m.ident(f.Name), def),
	}
}

func (m *Migrator) alterType(t *schema.Table, f *schema.Field, col Column) Step {
	s := Step{
		Kind: AlterType, Table: t.Name, Name: f.Name, Destructive: true, Breaks: true,
		Note: fmt.Sprintf("live type %s, model type %s", col.Type, m.modelType(f)),
	}
	if m.ddl.modify != nil {
		s.SQL = m.ddl.modify(m, t, f)
	} else if sql, ok := m.d.AlterType(m.ident(t.Name), m.ident(f.Name), f.CreateTableSQLType); ok {
		s.SQL = sql
	} else {
		s.Note += "; " + m.d.Product() + " cannot change a column's type in place"
	}
	return s
}

// widen is the step that lengthens a varchar column: no data changes,
// and PostgreSQL rewrites neither the table nor its indexes for it (InnoDB
// widens in place within a length-byte size), so it is not destructive.
func (m *Migrator) widen(t *schema.Table, f *schema.Field, col Column) Step {
	if m.ddl.modify != nil {
		return Step{
			Kind: AlterType, Table: t.Name, Name: f.Name, SQL: m.ddl.modify(m, t, f),
			Note: fmt.Sprintf("widened from %s to %s", col.Type, m.modelType(f)),
		}
	}
	return Step{
		Kind: AlterType, Table: t.Name, Name: f.Name,
		SQL:  fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s", m.ident(t.Name), m.ident(f.Name), f.CreateTableSQLType),
		Note: fmt.Sprintf("widened from %s to %s", col.Type, f.CreateTableSQLType),
	}
}

// varcharLengths returns the lengths of two varchar types (as the catalog
// and as a model write them), when both have one.
func varcharLengths(live, model string) (int, int, bool) {
	l, ok1 := varcharLength(live)
	m, ok2 := varcharLength(model)
	return l, m, ok1 && ok2
}

func varcharLength(t string) (int, bool) {
	t = strings.ToLower(strings.TrimSpace(t))
	var rest string
	switch {
	case strings.HasPrefix(t, "character varying("):
		rest = t[len("character varying("):]
	case strings.HasPrefix(t, "varchar("):
		rest = t[len("varchar("):]
	default:
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(rest, ")"))
	return n, err == nil && strings.HasSuffix(rest, ")")
}

func zeroDefault(typ string) string {
	switch {
	case strings.Contains(typ, "int"), strings.Contains(typ, "real"), strings.Contains(typ, "double"),
		strings.Contains(typ, "numeric"), strings.Contains(typ, "float"):
		return "0"
	case strings.Contains(typ, "bool"):
		return "FALSE"
	case strings.Contains(typ, "char"), strings.Contains(typ, "text"), strings.Contains(typ, "clob"):
		return "''"
	case strings.Contains(typ, "jsonb"), typ == "json":
		return "'null'"
	case strings.Contains(typ, "timestamp"), strings.Contains(typ, "date"):
		return "'1970-01-01 00:00:00+00:00'"
	}
	return ""
}
