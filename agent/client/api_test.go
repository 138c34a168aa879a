package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

func fakeAPI(t *testing.T, h http.HandlerFunc, maxReply int64) *API {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	a, err := NewAPI(APIConfig{Addr: srv.Listener.Addr().String(), MaxReply: maxReply})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Every reply of an agent, good or hostile, becomes a typed value or an
// error that names the agent and says what was wrong.
func TestAPIReplies(t *testing.T) {
	ctx := context.Background()
	a := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/info":
			w.Write([]byte(`{"id":3,"group":"g","role":"master","epoch":{"term":7,"id":3}}`))
		case "/v1/members":
			w.WriteHeader(421)
			w.Write([]byte(`{"code":"not-master","error":"not master","master":2,"master_addr":"10.0.0.2:8946"}`))
		case "/v1/divergence":
			w.WriteHeader(500)
			w.Write([]byte(`<html>proxy error</html>`))
		case "/v1/divergence/1":
			w.Write([]byte(`{"id": "one"}`))
		case "/v1/divergence/2":
			w.Write([]byte(strings.Repeat("x", 2048)))
		}
	}, 1024)
	info, raw, err := a.Info(ctx)
	if err != nil || info.ID != 3 || info.Role != "master" || info.Epoch != (api.Epoch{Term: 7, ID: 3}) || !strings.Contains(string(raw), `"epoch":{"term":7,"id":3}`) {
		t.Fatalf("info %+v raw %s err %v", info, raw, err)
	}
	_, _, err = a.Members(ctx)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 421 || se.Code != wire.CodeNotMaster || se.Master != 2 ||
		!strings.Contains(err.Error(), "master is 2 at 10.0.0.2:8946") || !strings.Contains(err.Error(), a.Addr()) {
		t.Fatalf("not-master reply: %v", err)
	}
	if _, _, err = a.Records(ctx); !errors.As(err, &se) || se.Status != 500 || !strings.Contains(err.Error(), "Internal Server Error") {
		t.Fatalf("a 500 with a body that is no error: %v", err)
	}
	if _, _, err = a.Record(ctx, 1); err == nil || !strings.Contains(err.Error(), "does not decode") {
		t.Fatalf("a reply of the wrong shape: %v", err)
	}
	if _, _, err = a.Record(ctx, 2); !errors.Is(err, api.ErrTooLarge) {
		t.Fatalf("a reply over the bound: %v", err)
	}
}

func TestNewAPIValidates(t *testing.T) {
	for _, cfg := range []APIConfig{{}, {Addr: "no-port"}, {Addr: "127.0.0.1:99999"}, {Addr: "127.0.0.1:1", Timeout: -1}} {
		if _, err := NewAPI(cfg); err == nil {
			t.Errorf("NewAPI(%+v) accepted", cfg)
		}
	}
	a, err := NewAPI(APIConfig{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Info(context.Background()); err == nil || !strings.Contains(err.Error(), "agent 127.0.0.1:1 unreachable") {
		t.Fatalf("unreachable agent: %v", err)
	}
}
