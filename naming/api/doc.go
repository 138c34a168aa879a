// Package api holds the words that every Mastership component shares on the
// wire: identities, epochs, roles, the naming node's request and reply
// messages, and the typed error codes carried in replies.
//
// Everything here is plain data encoded with go-msgpack/v2 (and JSON for the
// HTTP API); validation is pure and cheap so that every decoder calls it before
// anything is stored.
//
// Usage:
//
//	if err := api.ValidateGroup(name); err != nil {
//		return err // names the field and the value it rejects
//	}
//	e := api.Epoch{Term: 3, ID: 4}
//	if e.Less(seen) { /* fence: older than an epoch already seen */ }
package api
