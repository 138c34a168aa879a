// Package auth is what Mastership's agents, naming nodes and command line
// share to trust each other: ACL tokens with capabilities, the credentials
// a client presents (a bearer token, a client certificate), mutual TLS on
// the servers, and the generation of a CA and certificates.
//
// # Capabilities
//
// A token grants some of four capabilities:
//
//	agent     join, renew, leave, register itself, recheck; agent message
//	          streams, /rpc/state, /rpc/hashes, /rpc/notify
//	client    kv reads and writes
//	operator  manual register, divergence replay and discard, fault
//	          control, keyring changes
//	read      status, events, lookup, info, members, divergence list
//
// /v1/health stays open. A server without an ACL (no -acl) is open: every
// caller has every capability, and the server says so with a warning at
// start.
//
// # Files
//
// The ACL file is JSON:
//
//	{"tokens": [
//	  {"name": "agents", "secret": "...", "capabilities": ["agent", "client", "read"]},
//	  {"name": "ops", "secret": "...", "capabilities": ["operator", "read"]}
//	]}
//
// Secrets are at least 16 bytes, with no white space at either end and no
// control character (a bearer token is trimmed, and no header carries a
// control character: such a secret could never be presented); they are compared in constant time (the
// server keeps their SHA-256 only) and never logged. Names are what logs
// and errors show.
//
// # Usage
//
//	acl, err := auth.LoadACL(path)           // nil ACL: open
//	srv := auth.Server{ACL: acl, TLS: tlsCfg} // tlsCfg from auth.ServerTLS
//	ln = srv.Listen(ln)                       // TLS, client certificates required
//	mux.Handle("POST /v1/kv", srv.Require(auth.Client, handler, writeErr))
//
//	creds := auth.Creds{Token: token, TLS: clientTLS} // auth.ClientTLS
//	hc := &http.Client{Transport: creds.Transport(&http.Transport{})}
//	hc.Get(creds.URL(addr, "/v1/info"))
package auth
