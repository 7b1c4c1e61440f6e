// Command pgping exits 0 if the PostgreSQL at TURNKEEP_POSTGRES_URL answers
// a query within five seconds, and 1 otherwise. CI uses it to fail rather
// than skip the PostgreSQL tests.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

func main() {
	url := os.Getenv("TURNKEEP_POSTGRES_URL")
	if url == "" {
		fmt.Fprintln(os.Stderr, "pgping: TURNKEEP_POSTGRES_URL is not set")
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", url)
	if err == nil {
		defer db.Close()
		var one int
		err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgping:", err)
		os.Exit(1)
	}
}
