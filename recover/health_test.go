package recover_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/recover"
)

// service is the managed services' health endpoint, one path per agent.
type service struct {
	mu   sync.Mutex
	sick map[string]bool
}

func (s *service) set(id uint64, sick bool) {
	s.mu.Lock()
	s.sick[fmt.Sprint(id)] = sick
	s.mu.Unlock()
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	sick := s.sick[strings.TrimPrefix(r.URL.Path, "/health/")]
	s.mu.Unlock()
	if sick {
		http.Error(w, "replication broken", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// A master whose service fails its checks hands over to the best healthy
// back-up; an unhealthy agent takes no mastership back although it ranks
// first, and does once it is healthy again. Every acknowledged write is
// in the final state.
func TestUnhealthyMasterHandsOver(t *testing.T) {
	svc := &service{sick: map[string]bool{}}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 66,
		Monitor: monitors(recover.Config{}),
		Tune: func(cfg *config.Agent) {
			cfg.CheckHTTP = fmt.Sprintf("%s/health/%d", srv.URL, cfg.ID)
			cfg.CheckInterval, cfg.CheckFailures = 50*time.Millisecond, 2
		}})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	acked := map[string]string{}
	put := func(master uint64, i int) {
		t.Helper()
		k := fmt.Sprintf("k%d", i)
		if _, err := c.Put(master, k, "v"+k); err != nil {
			t.Fatalf("put %s through %d: %v", k, master, err)
		}
		acked[k] = "v" + k
	}
	for i := 0; i < 5; i++ {
		put(1, i)
	}
	master := func(want uint64) func() bool {
		return func() bool { ms := c.Masters(); return len(ms) == 1 && ms[0] == want && c.Registered() == want }
	}

	svc.set(1, true)
	c.WaitFor(10*time.Second, "2 master after 1's service failed", master(2))
	if sv := c.Members[1].Agent.Info().Service; sv == nil || sv.Healthy || sv.Last == nil || !strings.Contains(sv.Last.Error, "503") {
		t.Fatalf("1's service health in info: %+v", sv)
	}
	for i := 5; i < 10; i++ {
		put(2, i)
	}
	c.WaitFor(10*time.Second, "3 seeing 1 unhealthy in gossip", func() bool {
		for _, m := range c.Members[3].Agent.MembersJSON() {
			if m.ID == 1 {
				return m.Service == "unhealthy"
			}
		}
		return false
	})
	// 2 fails too: the one healthy agent left, 3, takes over.
	svc.set(2, true)
	c.WaitFor(10*time.Second, "3 master after 2's service failed", master(3))
	for i := 10; i < 15; i++ {
		put(3, i)
	}
	// 1 recovers: it ranks first, so it asks 3 for mastership.
	svc.set(1, false)
	c.WaitFor(20*time.Second, "1 master again once healthy", func() bool { return master(1)() && c.Stable() })
	for k, v := range acked {
		if got, _ := c.Members[1].Agent.Get(k); got != v {
			t.Errorf("acknowledged %s=%s reads %q on the final master", k, v, got)
		}
	}
}
