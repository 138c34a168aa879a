package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// KeyringFile is the file in the data directory that keeps the gossip keys
// across restarts once they were rotated: the first is the one that
// encrypts. When it exists it overrides -encrypt.
const KeyringFile = "keyring.json"

type keyringFile struct {
	Keys []string `json:"keys"`
}

// loadKeys returns the gossip keys at start: the keyring file's when the
// data directory holds one, else -encrypt's.
func (a *Agent) loadKeys() (primary []byte, extra [][]byte, err error) {
	primary, err = a.cfg.EncryptKey()
	if err != nil || a.cfg.DataDir == "" {
		return primary, nil, err
	}
	b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, KeyringFile))
	if errors.Is(err, os.ErrNotExist) {
		return primary, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("agent: keyring file: %w", err)
	}
	var f keyringFile
	if err := json.Unmarshal(b, &f); err != nil || len(f.Keys) == 0 {
		return nil, nil, fmt.Errorf("agent: keyring file %s: want {\"keys\": [base64, ...]} with at least one key (%v)",
			filepath.Join(a.cfg.DataDir, KeyringFile), err)
	}
	var keys [][]byte
	for i, k := range f.Keys {
		kb, err := decodeKey(k)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: keyring file %s: key %d: %w", filepath.Join(a.cfg.DataDir, KeyringFile), i+1, err)
		}
		keys = append(keys, kb)
	}
	if primary != nil && !bytes.Equal(primary, keys[0]) {
		a.logger.Info("the keyring file in the data dir overrides -encrypt (the keys were rotated)")
	}
	return keys[0], keys[1:], nil
}

func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w key: not standard base64", api.ErrInvalid)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("%w key: %d bytes, want 16, 24 or 32", api.ErrInvalid, len(k))
}

// localKeyring applies one keyring operation to this agent and keeps the
// result in the keyring file.
func (a *Agent) localKeyring(req wire.KeyringRequest) wire.KeyringResult {
	res := wire.KeyringResult{ID: a.cfg.ID, Group: a.cfg.Group, API: a.advertisedAPI()}
	err := func() error {
		a.keyringMu.Lock()
		defer a.keyringMu.Unlock()
		var key []byte
		if req.Op != "list" {
			var err error
			if key, err = decodeKey(req.Key); err != nil {
				return err
			}
		}
		var err error
		switch req.Op {
		case "list":
		case "install":
			err = a.gossip.InstallKey(key)
		case "use":
			err = a.gossip.UseKey(key)
		case "remove":
			err = a.gossip.RemoveKey(key)
		default:
			return fmt.Errorf("%w keyring op %q: want list, install, use or remove", api.ErrInvalid, req.Op)
		}
		if err != nil {
			return err
		}
		primary, keys, err := a.gossip.Keys()
		if err != nil {
			return err
		}
		res.Primary = base64.StdEncoding.EncodeToString(primary)
		for _, k := range keys {
			res.Keys = append(res.Keys, base64.StdEncoding.EncodeToString(k))
		}
		sort.Strings(res.Keys)
		if req.Op != "list" {
			return a.saveKeyring(primary, keys)
		}
		return nil
	}()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.OK = true
	if req.Op != "list" {
		a.logger.Warn("gossip keyring changed", "op", req.Op)
	}
	return res
}

// saveKeyring writes the keys, primary first, to the data directory (0600,
// written aside and renamed); nothing without a data directory.
func (a *Agent) saveKeyring(primary []byte, keys [][]byte) error {
	if a.cfg.DataDir == "" {
		return nil
	}
	f := keyringFile{Keys: []string{base64.StdEncoding.EncodeToString(primary)}}
	for _, k := range keys {
		if !bytes.Equal(k, primary) {
			f.Keys = append(f.Keys, base64.StdEncoding.EncodeToString(k))
		}
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	path := filepath.Join(a.cfg.DataDir, KeyringFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("agent: keyring file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("agent: keyring file: %w", err)
	}
	return nil
}

// Keyring applies a keyring operation to every live member of the gossip
// cluster (every group shares the cluster's keys), this agent first, and
// returns each one's outcome, sorted by group and ID. The operator's token
// goes along to each member.
//
// The operator's token goes only to members that proved they belong: in an
// encrypted gossip cluster (a member holds the key) or over mutual TLS (a
// member holds a certificate of the CA). Without either, any process that
// joined gossip would receive it, so the keyring changes only here.
func (a *Agent) Keyring(ctx context.Context, req wire.KeyringRequest, token string) []wire.KeyringResult {
	out := []wire.KeyringResult{a.localKeyring(req)}
	if _, _, err := a.gossip.Keys(); errors.Is(err, gossip.ErrNoEncryption) && a.server.TLS == nil {
		return out
	}
	body, _ := json.Marshal(req)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range a.Members() {
		if m.Self || m.Health == gossip.HealthDead {
			continue
		}
		wg.Add(1)
		go func(m gossip.Member) {
			defer wg.Done()
			r := a.remoteKeyring(ctx, m.Meta.API, body, token)
			r.ID, r.Group, r.API = m.Meta.ID, m.Meta.Group, m.Meta.API
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
		}(m)
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (a *Agent) remoteKeyring(ctx context.Context, addr string, body []byte, token string) wire.KeyringResult {
	fail := func(err error) wire.KeyringResult { return wire.KeyringResult{Error: err.Error()} }
	if addr == "" {
		return fail(errors.New("no API address in gossip"))
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.creds.URL(addr, "/v1/keyring?local=1"), bytes.NewReader(body))
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Content-Type", "application/json")
	// The operator's token, not the agent's: the change is the operator's.
	auth.Creds{Token: token}.Authorize(req)
	resp, err := a.keyringClient().Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxMessageBytes))
	if err != nil {
		return fail(err)
	}
	var results []wire.KeyringResult
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			return fail(&e)
		}
		return fail(fmt.Errorf("%s", resp.Status))
	}
	if err := json.Unmarshal(b, &results); err != nil || len(results) != 1 {
		return fail(fmt.Errorf("reply does not decode: %v", err))
	}
	return results[0]
}

// keyringClient is an HTTP client with the agent's TLS but no token of
// its own: each keyring request carries the operator's.
func (a *Agent) keyringClient() *http.Client {
	a.keyringOnce.Do(func() {
		a.keyringHTTP = &http.Client{Transport: auth.Creds{TLS: a.creds.TLS}.Transport(&http.Transport{DialContext: a.dial})}
	})
	return a.keyringHTTP
}

func (a *Agent) serveKeyring(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeJSON(w, api.ToError(err).Code.HTTPStatus(), api.ToError(err))
		return
	}
	var req wire.KeyringRequest
	if err := decodeJSON(body, &req, "keyring request"); err != nil {
		writeJSON(w, 400, err)
		return
	}
	switch req.Op {
	case "list", "install", "use", "remove":
	default:
		writeJSON(w, 400, api.Errorf(api.CodeInvalid, "keyring op %q: want list, install, use or remove", req.Op))
		return
	}
	if req.Op != "list" {
		if _, err := decodeKey(req.Key); err != nil {
			writeJSON(w, 400, api.ToError(err))
			return
		}
	}
	if r.URL.Query().Get("local") == "1" {
		writeJSON(w, 200, []wire.KeyringResult{a.localKeyring(req)})
		return
	}
	writeJSON(w, 200, a.Keyring(r.Context(), req, auth.BearerToken(r)))
}
