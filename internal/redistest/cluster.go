package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of redis-server processes, masters only, started
// for tests on loopback.
type Cluster struct {
	Addrs []string  // the masters' host:port, in start order
	Nodes []*Server // the masters' processes
}

// NewCluster starts a cluster of masters nodes (3 is the smallest Redis
// accepts) in a temporary directory and stops it when the test ends. It fails
// the test when redis-server or redis-cli is missing or the cluster does not
// come up.
func NewCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	c, err := StartCluster(tb.TempDir(), masters)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(c.Stop)
	return c
}

// StartCluster starts masters redis-server nodes with cluster mode on, each
// in its own subdirectory of dir and with its cluster bus on a free port of
// its own, joins them with `redis-cli --cluster create ... --cluster-yes`
// (the 16384 slots split evenly) and waits until every node reports
// cluster_state:ok and sees every slot covered. extra configuration lines go
// to every node. Stop it with Stop.
func StartCluster(dir string, masters int, extra ...string) (*Cluster, error) {
	if masters < 3 {
		return nil, fmt.Errorf("cluster of %d masters: Redis Cluster needs at least 3", masters)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli not found on PATH (install it: apt-get install redis-tools): %w", err)
	}
	c := &Cluster{}
	for i := 0; i < masters; i++ {
		nodeDir := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(nodeDir, 0o700); err != nil {
			c.Stop()
			return nil, err
		}
		var s *Server
		for attempt := 0; ; attempt++ {
			busPort, err := FreePort()
			if err != nil {
				c.Stop()
				return nil, err
			}
			conf := append([]string{
				"cluster-enabled yes",
				"cluster-config-file nodes.conf",
				"cluster-node-timeout 5000",
				"cluster-port " + strconv.Itoa(busPort),
				// a test cluster must keep answering for the slots it has
				"cluster-require-full-coverage no",
			}, extra...)
			s, err = Start(nodeDir, conf...)
			if err == nil {
				break
			}
			// another test took the bus port between FreePort and the bind
			if attempt < 4 && isAddrInUse(err) {
				continue
			}
			c.Stop()
			return nil, fmt.Errorf("cluster node %d: %w", i, err)
		}
		c.Nodes = append(c.Nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create %s: %w: %s", strings.Join(c.Addrs, " "), err, out)
	}
	if err := c.waitOK(30 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// waitOK polls every node until it reports the cluster healthy, all slots
// assigned, and knows every other master.
func (c *Cluster) waitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for _, addr := range c.Addrs {
		n := redis.NewClient(&redis.Options{Addr: addr})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := n.ClusterInfo(ctx).Result()
			cancel()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Addrs))+"\r") {
				break
			}
			last = fmt.Sprint(info, err)
			if time.Now().After(deadline) {
				_ = n.Close()
				return fmt.Errorf("cluster node %s not ready within %s: %s", addr, timeout, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = n.Close()
	}
	return nil
}

// Client returns a cluster client of c, closed when the test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	tb.Cleanup(func() { _ = rc.Close() })
	return rc
}

// NodeFor returns the address of the master that serves key.
func (c *Cluster) NodeFor(ctx context.Context, key string) (string, error) {
	n := redis.NewClient(&redis.Options{Addr: c.Addrs[0]})
	defer n.Close()
	slot, err := n.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", fmt.Errorf("CLUSTER KEYSLOT %q: %w", key, err)
	}
	slots, err := n.ClusterSlots(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("slot %d of %q is served by no node", slot, key)
}

// Stop kills every node and waits for them to exit.
func (c *Cluster) Stop() {
	for _, s := range c.Nodes {
		s.Stop()
	}
}
