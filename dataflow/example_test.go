package dataflow_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/turnkeep/turnkeep/dataflow"
)

// Note is the model of the examples: a bun model struct like any other.
type Note struct {
	ID     int64  `bun:"id,pk,autoincrement"`
	Author string `bun:"author,notnull"`
	Text   string `bun:"text,notnull"`
	Stars  int    `bun:"stars,notnull"`
}

// exampleDir returns a fresh directory for an example's database file and
// the function that removes it.
func exampleDir() (string, func()) {
	dir, err := os.MkdirTemp("", "dataflow-example-")
	if err != nil {
		log.Fatal(err)
	}
	return dir, func() { os.RemoveAll(dir) }
}

func Example() {
	dir, cleanup := exampleDir()
	defer cleanup()
	ctx := context.Background()

	db, err := dataflow.Open(ctx, "sqlite:///"+filepath.Join(dir, "notes.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// Register does no I/O: the table (and its index) is created on first use.
	notes, err := dataflow.Register[Note](db, dataflow.WithIndex("notes_author_idx", "author"))
	if err != nil {
		log.Fatal(err)
	}

	for _, n := range []Note{
		{Author: "ann", Text: "buy milk", Stars: 1},
		{Author: "bob", Text: "call mum", Stars: 5},
		{Author: "ann", Text: "write the report", Stars: 4},
		{Author: "ann", Text: "water the plants", Stars: 2},
	} {
		if err := notes.Create(ctx, &n); err != nil {
			log.Fatal(err)
		}
		fmt.Println("created note", n.ID) // the generated key is read back
	}

	// Ann's notes with at least two stars, best first.
	list, err := notes.List(ctx, dataflow.Query{
		Filter:  dataflow.Filter{"author": "ann", "stars": dataflow.Gte(2)},
		OrderBy: []string{"-stars"},
		Limit:   10,
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range list {
		fmt.Printf("%s: %q (%d stars)\n", n.Author, n.Text, n.Stars)
	}

	n, err := notes.Count(ctx, dataflow.Filter{"author": "ann"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ann has", n, "notes")

	_, err = notes.Read(ctx, 99)
	fmt.Println("note 99 missing:", errors.Is(err, dataflow.ErrNotFound))
	// Output:
	// created note 1
	// created note 2
	// created note 3
	// created note 4
	// ann: "write the report" (4 stars)
	// ann: "water the plants" (2 stars)
	// ann has 3 notes
	// note 99 missing: true
}

// RunInTx commits when the function returns nil and rolls back when it
// returns an error: here a star moves from one note to another, and a move
// that would go negative leaves both notes as they were.
func ExampleDB_RunInTx() {
	dir, cleanup := exampleDir()
	defer cleanup()
	ctx := context.Background()

	db, err := dataflow.Open(ctx, "sqlite:///"+filepath.Join(dir, "notes.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	notes, err := dataflow.Register[Note](db)
	if err != nil {
		log.Fatal(err)
	}
	pair := []Note{{Author: "ann", Text: "from", Stars: 1}, {Author: "bob", Text: "to"}}
	if err := notes.BulkCreate(ctx, pair); err != nil { // fills in pair[i].ID
		log.Fatal(err)
	}

	errNoStars := errors.New("no stars left")
	moveStar := func(ctx context.Context, tx *dataflow.Tx) error {
		t := notes.WithTx(tx) // the same table, inside the transaction
		src, err := t.Read(ctx, pair[0].ID)
		if err != nil {
			return err
		}
		dst, err := t.Read(ctx, pair[1].ID)
		if err != nil {
			return err
		}
		src.Stars--
		dst.Stars++
		if err := t.Update(ctx, dst); err != nil {
			return err
		}
		if src.Stars < 0 {
			return errNoStars // the update of dst above is rolled back
		}
		return t.Update(ctx, src)
	}

	show := func() {
		list, err := notes.List(ctx, dataflow.Query{})
		if err != nil {
			log.Fatal(err)
		}
		for _, n := range list {
			fmt.Printf("  %s has %d\n", n.Author, n.Stars)
		}
	}
	fmt.Println("first move:", db.RunInTx(ctx, moveStar))
	show()
	err = db.RunInTx(ctx, moveStar)
	fmt.Println("second move:", err, errors.Is(err, errNoStars))
	show()
	// Output:
	// first move: <nil>
	//   ann has 0
	//   bob has 1
	// second move: no stars left true
	//   ann has 0
	//   bob has 1
}
