package client

// What the cluster tests (package client_test, which the naming node's
// import of this package keeps outside) read of a Client's internals.

// Redirects counts the not-master hints followed.
func (c *Client) Redirects() uint64 { return c.redirects.Load() }

// Retries counts the back-offs taken.
func (c *Client) Retries() uint64 { return c.retries.Load() }

// SetMaster replaces the cached master.
func (c *Client) SetMaster(addr string) { c.setMaster(addr) }
