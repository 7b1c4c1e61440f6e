package sqlcore_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// engineFile reports whether a file is an engine's own (its SQL and its
// choices): named after the engine, as backend/sqlite.go and
// internal/sqlcore/postgres.go are.
func engineFile(name string) bool {
	for _, e := range []string{"sqlite", "postgres", "mysql"} {
		if strings.HasPrefix(name, e) {
			return true
		}
	}
	return false
}

// dialectNames are the names a branch on the engine would compare.
var dialectNames = map[string]bool{"pg": true, "postgres": true, "postgresql": true, "sqlite": true, "sqlite3": true, "mysql": true, "mariadb": true}

// nameChecks returns where src, a Go file, branches on a dialect's name:
// a comparison with, or a switch case of, a dialect name; a use of the
// old sqlcore.Dialect.PG; a variable named after an engine.
func nameChecks(fset *token.FileSet, file string, src any) ([]string, error) {
	f, err := parser.ParseFile(fset, file, src, 0)
	if err != nil {
		return nil, err
	}
	var found []string
	isName := func(e ast.Expr) bool {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return false
		}
		v, err := strconv.Unquote(lit.Value)
		return err == nil && dialectNames[strings.ToLower(v)]
	}
	report := func(n ast.Node, what string) {
		found = append(found, fset.Position(n.Pos()).String()+": "+what)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BinaryExpr:
			if (n.Op == token.EQL || n.Op == token.NEQ) && (isName(n.X) || isName(n.Y)) {
				report(n, "compares a dialect name")
			}
		case *ast.CaseClause:
			for _, e := range n.List {
				if isName(e) {
					report(e, "switches on a dialect name")
				}
			}
		case *ast.SelectorExpr:
			if n.Sel.Name == "PG" {
				report(n, "asks whether the dialect is PostgreSQL")
			}
		case *ast.AssignStmt:
			for _, l := range n.Lhs {
				if id, ok := l.(*ast.Ident); ok && dialectNames[strings.ToLower(id.Name)] {
					report(n, "names a variable after an engine")
				}
			}
		}
		return true
	})
	return found, nil
}

// TestNoDialectNameChecks fails when shared code (any file of backend,
// dataflow, migrate or sqlcore not named after an engine) branches on a
// dialect's name: an engine's SQL and choices live in its own files, and
// shared code asks the dialect (sqlcore.Dialect) or the store (backend)
// for features, so that adding an engine means adding its files.
func TestNoDialectNameChecks(t *testing.T) {
	fset := token.NewFileSet()
	t.Run("detects", func(t *testing.T) {
		for _, src := range []string{
			"package p\nfunc f() { pg := b.db.Dialect() == \"pg\"; _ = pg }",
			"package p\nfunc f() bool { return d.Name() != \"sqlite\" }",
			"package p\nfunc f() { switch name { case \"mysql\": } }",
			"package p\nfunc f() bool { return m.d.PG }",
		} {
			found, err := nameChecks(fset, "x.go", src)
			require.NoError(t, err)
			assert.NotEmpty(t, found, "not detected: %s", src)
		}
		found, err := nameChecks(fset, "x.go", "package p\nfunc f() bool { return d.NativeArrays() && name == \"x\" }")
		require.NoError(t, err)
		assert.Empty(t, found, "a feature check reported")
	})
	checked := 0
	for _, dir := range []string{"../../backend", "../../dataflow", "../../migrate", "."} {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || engineFile(name) {
				continue
			}
			found, err := nameChecks(fset, filepath.Join(dir, name), nil)
			require.NoError(t, err)
			for _, f := range found {
				t.Errorf("%s (move it into the engine's files, or ask a feature)", f)
			}
			checked++
		}
	}
	assert.Greater(t, checked, 40, "shared files checked")
}
