// Command mariadbd starts a private MariaDB server for CI: a data
// directory of its own (-dir), a free loopback port, a unix socket in the
// directory; never the machine's own server. It prints shell assignments
// of TURNKEEP_MYSQL_URL and TURNKEEP_MYSQL_PID and leaves the server
// running, detached; the caller ends it by that PID.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/turnkeep/turnkeep/internal/dbtest"
)

func main() {
	dir := flag.String("dir", "", "an empty directory for the server (default: a new temporary one)")
	flag.Parse()
	m, err := dbtest.NewMariaDBServer(dbtest.MariaDBOptions{Dir: *dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mariadbd:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.Start(ctx, true); err != nil {
		fmt.Fprintln(os.Stderr, "mariadbd:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "mariadbd %d on 127.0.0.1:%d, %s, ready in %s\n", m.PID(), m.Port, m.Dir, m.Started.Round(time.Millisecond))
	fmt.Printf("TURNKEEP_MYSQL_URL=%s\nTURNKEEP_MYSQL_PID=%d\nTURNKEEP_MYSQL_DIR=%s\n", m.URL("test"), m.PID(), m.Dir)
}
