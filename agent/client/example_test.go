package client_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/naming"
)

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A client of a group: it finds the master through the naming node (or
// any agent), follows redirects and retries until its timeout; a write it
// retries applies once. Here the group is one agent with the kv state
// machine, beside a naming node, in this process.
func Example() {
	dir, _ := os.MkdirTemp("", "mastership-example-")
	defer os.RemoveAll(dir)
	ncfg, _ := config.DefaultNaming("local")
	ncfg.DataDir, ncfg.Bind = dir, freeAddr()
	ln, err := net.Listen("tcp", ncfg.Bind)
	if err != nil {
		fmt.Println(err)
		return
	}
	nn, err := naming.New(ncfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	go nn.Serve(ln)
	defer nn.Close()
	acfg, _ := config.DefaultAgent("local")
	acfg.Group, acfg.ID, acfg.Mode = "orders", 1, "available"
	acfg.Bind, acfg.API, acfg.Naming = freeAddr(), freeAddr(), ncfg.Bind
	a, err := agent.New(acfg, agent.Options{})
	if err == nil {
		err = a.Start()
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()

	c, err := client.New(client.Config{Group: "orders", Naming: ncfg.Bind, Timeout: 10 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Put(ctx, "order-1", []byte("paid")); err != nil {
		fmt.Println(err)
		return
	}
	r, err := c.Get(ctx, "order-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("order-1 = %s (from master %d)\n", r.Value, r.Master)
	// Output: order-1 = paid (from master 1)
}
