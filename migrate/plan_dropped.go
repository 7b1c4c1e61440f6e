package migrate

import (
	"slices"
	"strings"

	"github.com/uptrace/bun/schema"
)

// droppedSteps are the steps that drop the indexes model.Dropped names
// and the live table still holds: one DROP INDEX each.
func (m *Migrator) droppedSteps(t *schema.Table, model Model, ti *TableInfo) []Step {
	var steps []Step
	for _, name := range model.Dropped {
		if slices.ContainsFunc(model.Indexes, func(ix Index) bool { return ix.Name == name }) {
			continue // the model has it after all
		}
		if _, ok := ti.index(name); !ok {
			continue
		}
		steps = append(steps, Step{
			Kind: DropIndex, Table: t.Name, Name: name,
			SQL:  "DROP INDEX IF EXISTS " + m.ident(name),
			Note: "the model no longer has this index",
		})
	}
	return steps
}

// writeDropped adds the dropped indexes to a checksum's text, so that a
// table that still holds one is planned again.
func writeDropped(b *strings.Builder, model Model) {
	dropped := slices.Clone(model.Dropped)
	slices.Sort(dropped)
	for _, name := range dropped {
		b.WriteString("dropped index " + name + "\n")
	}
}
