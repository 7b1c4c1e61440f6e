package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EnvGalera names the variable that enables the tests that start a
// three-node Galera cluster (set to 1; .ci/run sets it).
const EnvGalera = "TURNKEEP_GALERA"

// Galera is a private Galera cluster on loopback: n mariadbd processes,
// each with its own data directory and its own ports (SQL, group
// communication, incremental and full state transfer by rsync). The first
// node bootstraps the cluster; the others join it one after another.
type Galera struct {
	Nodes []*MariaDB
	// Synced is how long the cluster took to start, from the first exec
	// to every node Synced.
	Synced time.Duration

	gcomm []int // the group communication port of each node
}

// HaveGalera reports whether the Galera provider and rsync (the state
// transfer a joining node uses) are installed, besides MariaDB.
func HaveGalera() bool {
	if !HaveMariaDB() {
		return false
	}
	if _, err := os.Stat(GaleraProvider); err != nil {
		return false
	}
	for _, dir := range strings.Split(os.Getenv("PATH")+":/usr/bin", ":") {
		if _, err := os.Stat(dir + "/rsync"); err == nil {
			return true
		}
	}
	return false
}

// NewGalera starts an n-node cluster for t, removed at cleanup. It skips t
// unless EnvGalera is set, and fails it when the packages are missing.
func NewGalera(t testing.TB, n int) *Galera {
	t.Helper()
	if os.Getenv(EnvGalera) == "" {
		t.Skipf("Galera tests skipped: set %s=1 (needs mariadb-server, galera-4, rsync)", EnvGalera)
	}
	if !HaveGalera() {
		t.Fatalf("%s is set but %s, %s or rsync is missing (apt-get install mariadb-server galera-4 rsync)", EnvGalera, MariaDBServer, GaleraProvider)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g, err := StartGalera(ctx, n)
	if g != nil {
		t.Cleanup(func() {
			if err := g.Remove(); err != nil {
				t.Logf("remove galera: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("start galera: %v", err)
	}
	return g
}

// StartGalera starts an n-node cluster and waits until every node is
// Synced. On error it returns the cluster as far as it got, for Remove.
func StartGalera(ctx context.Context, n int) (*Galera, error) {
	if n < 1 {
		return nil, errors.New("galera: need a node")
	}
	start := time.Now()
	g := &Galera{}
	ports := make([][4]int, n) // sql, gcomm, ist, sst
	seen := map[int]bool{}
	for i := range ports {
		for j := range ports[i] {
			for {
				p, err := FreePort()
				if err != nil {
					return nil, err
				}
				if !seen[p] {
					seen[p] = true
					ports[i][j] = p
					break
				}
			}
		}
		g.gcomm = append(g.gcomm, ports[i][1])
	}
	var addrs []string
	for _, p := range g.gcomm {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(p))
	}
	for i := range n {
		cfg := []string{
			"wsrep_on=ON",
			"wsrep_provider=" + GaleraProvider,
			"wsrep_cluster_name=turnkeep",
			"wsrep_cluster_address=gcomm://" + strings.Join(addrs, ","),
			"wsrep_node_name=node" + strconv.Itoa(i+1),
			"wsrep_node_address=127.0.0.1",
			fmt.Sprintf("wsrep_provider_options=gmcast.listen_addr=tcp://127.0.0.1:%d;ist.recv_addr=127.0.0.1:%d;gcache.size=64M", ports[i][1], ports[i][2]),
			"wsrep_sst_method=rsync",
			fmt.Sprintf("wsrep_sst_receive_address=127.0.0.1:%d", ports[i][3]),
			"binlog_format=ROW",
			"default_storage_engine=InnoDB",
			"innodb_autoinc_lock_mode=2",
		}
		m, err := NewMariaDBServer(MariaDBOptions{NoInstall: i > 0, Config: cfg, Port: ports[i][0]})
		if err != nil {
			return g, fmt.Errorf("node %d: %w", i+1, err)
		}
		g.Nodes = append(g.Nodes, m)
	}
	// Bootstrap, then join one at a time: each joiner takes a full state
	// transfer from a Synced donor.
	for i, m := range g.Nodes {
		var args []string
		if i == 0 {
			args = []string{"--wsrep-new-cluster"}
		}
		if err := m.start(ctx, false, args...); err != nil {
			if i > 0 {
				err = fmt.Errorf("%w; donor's log: %s", err, g.Nodes[0].logTail())
			}
			return g, fmt.Errorf("node %d: %w", i+1, err)
		}
		if err := g.WaitSynced(ctx, i, i+1); err != nil {
			return g, err
		}
	}
	g.Synced = time.Since(start)
	return g, nil
}

// WaitSynced waits until node i (from 0) reports itself Synced in a
// primary component of size members.
func (g *Galera) WaitSynced(ctx context.Context, i, members int) error {
	m := g.Nodes[i]
	return m.wait(ctx, func(ctx context.Context, db *sql.DB) error {
		var name, state, size, status string
		if err := db.QueryRowContext(ctx, "SHOW STATUS LIKE 'wsrep_local_state_comment'").Scan(&name, &state); err != nil {
			return err
		}
		if err := db.QueryRowContext(ctx, "SHOW STATUS LIKE 'wsrep_cluster_size'").Scan(&name, &size); err != nil {
			return err
		}
		if err := db.QueryRowContext(ctx, "SHOW STATUS LIKE 'wsrep_cluster_status'").Scan(&name, &status); err != nil {
			return err
		}
		if state != "Synced" || size != strconv.Itoa(members) || status != "Primary" {
			return fmt.Errorf("node %d: %s, cluster size %s, %s", i+1, state, size, status)
		}
		return nil
	})
}

// Restart starts node i again (after Kill or Stop), joining the cluster,
// and waits until it is Synced among members nodes.
func (g *Galera) Restart(ctx context.Context, i, members int) error {
	if os.Geteuid() == 0 {
		// The files mariadbd made since are root's; a state transfer's
		// rsync daemon, which runs as nobody, must be able to replace them.
		err := filepath.WalkDir(g.Nodes[i].dataDir(), func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, nobodyID, nobodyID)
		})
		if err != nil {
			return fmt.Errorf("node %d: %w", i+1, err)
		}
	}
	if err := g.Nodes[i].start(ctx, false); err != nil {
		return fmt.Errorf("node %d: %w", i+1, err)
	}
	return g.WaitSynced(ctx, i, members)
}

// Remove stops every node and removes its directory.
func (g *Galera) Remove() error {
	var errs []error
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		errs = append(errs, g.Nodes[i].Remove())
	}
	return errors.Join(errs...)
}
