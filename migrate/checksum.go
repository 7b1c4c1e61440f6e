package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/uptrace/bun/schema"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// Checksum returns the SHA-256 of the model's canonical schema: the table
// name, its columns (name, type, constraints, default) and its indexes. Two
// models with the same checksum need the same table.
func (m *Migrator) Checksum(model Model) (string, error) {
	t, err := m.table(model)
	if err != nil {
		return "", err
	}
	return checksum(m.d, t, model), nil
}

func checksum(d sqlcore.Dialect, t *schema.Table, model Model) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dialect %s\ntable %s\n", d.Name(), t.Name)
	if model.WithoutRowID && d.WithoutRowID() {
		b.WriteString("without rowid\n")
	}
	for _, f := range t.Fields {
		fmt.Fprintf(&b, "column %s %s notnull=%t pk=%t autoincrement=%t identity=%t default=%q\n",
			f.Name, f.CreateTableSQLType, f.NotNull, f.IsPK, f.AutoIncrement, f.Identity, f.SQLDefault)
	}
	for _, cols := range sortedUnique(t) {
		fmt.Fprintf(&b, "unique %s\n", cols)
	}
	idx := append([]Index(nil), model.Indexes...)
	sort.Slice(idx, func(i, j int) bool { return idx[i].Name < idx[j].Name })
	for _, ix := range idx {
		if ix.Where != "" {
			fmt.Fprintf(&b, "index %s unique=%t (%s) where %s\n", ix.Name, ix.Unique, strings.Join(ix.Columns, ","), ix.Where)
			continue
		}
		fmt.Fprintf(&b, "index %s unique=%t (%s)\n", ix.Name, ix.Unique, strings.Join(ix.Columns, ","))
	}
	writeDropped(&b, model)
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

func sortedUnique(t *schema.Table) []string {
	var out []string
	for name, fields := range t.Unique {
		cols := make([]string, len(fields))
		for i, f := range fields {
			cols[i] = f.Name
		}
		out = append(out, name+"("+strings.Join(cols, ",")+")")
	}
	sort.Strings(out)
	return out
}
