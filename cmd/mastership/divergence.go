package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/store"
	"github.com/urfave/cli/v2"
)

const divergenceActions = "list, show, replay or discard"

func divergenceCommand() *cli.Command {
	return &cli.Command{
		Name:  "divergence",
		Usage: "list, show, replay or discard an agent's divergence records",
		UsageText: "mastership divergence list -agent ADDR [-json]\n" +
			"   mastership divergence show -agent ADDR [-json] ID\n" +
			"   mastership divergence replay -agent ADDR [-json] ID\n" +
			"   mastership divergence discard -agent ADDR -yes [-json] ID",
		Description: "A divergence record keeps a write that a losing master had logged (acknowledged or not)\n" +
			"and the retained master never saw. Replay resubmits it through the agent; its client ID and\n" +
			"sequence make a write the group already holds apply once. Discard removes it for good.\n" +
			"A state record (OP state) keeps a losing side's whole state, its log compacted past the fork:\n" +
			"show prints its pairs (operator token), to compare with the master's; it is not replayed.",
		Flags: agentFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErr("divergence: missing action: want %s", divergenceActions)
			}
			return usageErr("divergence: unknown action %q: want %s", c.Args().First(), divergenceActions)
		},
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list the agent's divergence records",
				UsageText: "mastership divergence list -agent ADDR [-json]",
				Flags:     agentFlags(),
				Action: agentAction(func(c *cli.Context, ag *client.API) error {
					recs, _, err := ag.Records(c.Context)
					if err != nil {
						return err
					}
					if flagBool(c, "json") {
						out := make([]recordJSON, len(recs))
						for i, r := range recs {
							out[i] = newRecordJSON(r, nil)
						}
						return writeJSON(c.App.Writer, out)
					}
					return printRecords(c.App.Writer, recs)
				}),
			},
			{
				Name:      "show",
				Usage:     "show one divergence record",
				UsageText: "mastership divergence show -agent ADDR [-json] ID",
				Flags:     agentFlags(),
				Action: recordAction(func(c *cli.Context, ag *client.API, id uint64) error {
					rec, _, err := ag.Record(c.Context, id)
					if err != nil {
						return err
					}
					var state []byte
					if rec.State {
						if state, err = ag.RecordState(c.Context, id); err != nil {
							return fmt.Errorf("state of record %d: %w", id, err)
						}
					}
					if flagBool(c, "json") {
						return writeJSON(c.App.Writer, newRecordJSON(rec, state))
					}
					printRecord(c.App.Writer, rec, state)
					return nil
				}),
			},
			{
				Name:      "replay",
				Usage:     "resubmit a divergence record's write through the agent",
				UsageText: "mastership divergence replay -agent ADDR [-json] ID",
				Flags:     agentFlags(),
				Action: recordAction(func(c *cli.Context, ag *client.API, id uint64) error {
					r, _, err := ag.Replay(c.Context, id)
					if err != nil {
						return fmt.Errorf("replay record %d: %w", id, err)
					}
					if flagBool(c, "json") {
						out := kvJSON{OK: r.OK, Found: r.Found, Value: r.Value, Epoch: r.Epoch, Index: r.Index, Master: r.Master}
						if err := writeJSON(c.App.Writer, out); err != nil {
							return err
						}
					} else if r.OK {
						fmt.Fprintf(c.App.Writer, "replayed record %d: ok (epoch %s, index %d)\n", id, r.Epoch, r.Index)
					}
					if !r.OK {
						// The write went through the log but did not apply:
						// a cas whose expectation no longer holds.
						return cli.Exit(fmt.Sprintf("replay record %d: not applied %s", id, r.Error), exitError)
					}
					return nil
				}),
			},
			{
				Name:      "discard",
				Usage:     "remove a divergence record for good (needs -yes)",
				UsageText: "mastership divergence discard -agent ADDR -yes [-json] ID",
				Flags:     append(agentFlags(), &cli.BoolFlag{Name: "yes", Usage: "confirm that the record's write is to be dropped"}),
				Action: recordAction(func(c *cli.Context, ag *client.API, id uint64) error {
					if !c.Bool("yes") {
						return usageErr("discard removes record %d for good; add -yes", id)
					}
					_, raw, err := ag.Discard(c.Context, id)
					if err != nil {
						return fmt.Errorf("discard record %d: %w", id, err)
					}
					if flagBool(c, "json") {
						return writeJSON(c.App.Writer, raw)
					}
					fmt.Fprintf(c.App.Writer, "discarded record %d\n", id)
					return nil
				}),
			},
		},
	}
}

// recordID parses the one argument, a record ID.
func recordID(c *cli.Context) (uint64, error) {
	if c.NArg() != 1 {
		return 0, usageErr("divergence %s: want one record ID, got %d argument(s)", c.Command.Name, c.NArg())
	}
	id, err := strconv.ParseUint(c.Args().First(), 10, 64)
	if err != nil || id == 0 {
		return 0, usageErr("divergence %s: record ID %q: want a number from 1", c.Command.Name, c.Args().First())
	}
	return id, nil
}

// recordJSON is a divergence record as the agent gives it, plus its
// operation decoded.
type recordJSON struct {
	store.Record
	// Op, never set, hides the record's msgpack operation (its JSON name
	// is the embedded one's), given as text in Operation; OpMsgpack keeps
	// it (base64) only when it is no kv operation (another state
	// machine's).
	Op        []byte  `json:"op,omitempty"`
	OpMsgpack []byte  `json:"op_msgpack,omitempty"`
	Operation *opJSON `json:"operation"`
	// Pairs are a state record's kv pairs, when its state was fetched
	// (show, not list) and is the kv's.
	Pairs map[string]string `json:"pairs,omitempty"`
}

// opJSON is a kv.Op with its byte strings as text.
type opJSON struct {
	Kind         string  `json:"kind"`
	Key          string  `json:"key"`
	Value        *string `json:"value,omitempty"`
	Expect       *string `json:"expect,omitempty"`
	ExpectAbsent bool    `json:"expect_absent,omitempty"`
}

// newRecordJSON decodes r; state is a state record's state (nil: not
// fetched).
func newRecordJSON(r store.Record, state []byte) recordJSON {
	out := recordJSON{Record: r}
	if r.State {
		if st, err := stateOf(state); state != nil && err == nil {
			out.Pairs = map[string]string{}
			st.Each(func(k string, v []byte) bool { out.Pairs[k] = string(v); return true })
		}
		return out
	}
	if op, err := kv.DecodeOp(r.Op); err == nil {
		o := opJSON{Kind: op.Kind, Key: op.Key, ExpectAbsent: op.ExpectAbsent}
		if op.Kind == kv.KindPut || op.Kind == kv.KindCAS {
			v := string(op.Value)
			o.Value = &v
		}
		if op.Kind == kv.KindCAS && !op.ExpectAbsent {
			e := string(op.Expect)
			o.Expect = &e
		}
		out.Operation = &o
	} else {
		out.OpMsgpack = r.Op
	}
	return out
}

// stateOf restores a state record's state as the kv's.
func stateOf(state []byte) (*kv.Store, error) {
	st := kv.NewStore()
	if err := st.Restore(state); err != nil {
		return nil, err
	}
	return st, nil
}

// opOf decodes a record's operation for the text output; an operation
// that does not decode shows as "?", a state record as "state".
func opOf(r store.Record) kv.Op {
	if r.State {
		return kv.Op{Kind: "state", Key: fmt.Sprintf("(%d bytes)", r.StateBytes)}
	}
	op, err := kv.DecodeOp(r.Op)
	if err != nil {
		return kv.Op{Kind: "?", Key: "?"}
	}
	return op
}

func printRecords(w io.Writer, recs []store.Record) error {
	if len(recs) == 0 {
		fmt.Fprintln(w, "no divergence records")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEPOCH\tINDEX\tCLIENT\tSEQ\tOP\tKEY\tACKED\tREPLAYED\tRECORDED")
	for _, r := range recs {
		op := opOf(r)
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\t%q\t%v\t%v\t%s\n", r.ID, r.Epoch, r.Index, r.Client, r.Seq,
			op.Kind, op.Key, r.Acked, r.Replayed, r.Recorded.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range recs {
		if r.Uncompared > 0 {
			state := "writes applied up to there that diverged are in no record (the state was over the record limit)"
			for _, s := range recs {
				if s.State && s.Uncompared == r.Uncompared {
					state = fmt.Sprintf("the state that holds the writes applied up to there is record %d (divergence show %d)", s.ID, s.ID)
				}
			}
			fmt.Fprintf(w, "\nsome records come from a recovery whose log was compacted past the fork (up to index %d, see record %d):\n%s\n",
				r.Uncompared, r.ID, state)
			break
		}
	}
	return nil
}

// printRecord prints r; state is a state record's state.
func printRecord(w io.Writer, r store.Record, state []byte) {
	if r.State {
		fmt.Fprintf(w, "id: %d\ngroup: %s\nstate: this side's state when its recovery began, at index %d (epoch %s), %d bytes\n"+
			"uncompared_before: %d (the log was compacted past the fork: the writes up to there that diverged are in this state)\n",
			r.ID, r.Group, r.Index, r.Epoch, r.StateBytes, r.Uncompared)
		if st, err := stateOf(state); err != nil {
			fmt.Fprintf(w, "pairs: not a key-value state (%v)\n", err)
		} else {
			fmt.Fprintf(w, "pairs: %d\n", st.Len())
			st.Each(func(k string, v []byte) bool { fmt.Fprintf(w, "  %q = %q\n", k, v); return true })
		}
		fmt.Fprintf(w, "retained: %d\nrecorded: %s\n", r.Retained, r.Recorded.UTC().Format(time.RFC3339Nano))
		return
	}
	op := opOf(r)
	fmt.Fprintf(w, "id: %d\ngroup: %s\nepoch: %s\nindex: %d\nclient: %d\nseq: %d\nop: %s\nkey: %q\n",
		r.ID, r.Group, r.Epoch, r.Index, r.Client, r.Seq, op.Kind, op.Key)
	if r.Uncompared > 0 {
		fmt.Fprintf(w, "uncompared_before: %d (the log was compacted past the fork: writes up to there that diverged are in the state record of this recovery, if it was kept)\n", r.Uncompared)
	}
	switch {
	case op.Kind == kv.KindCAS && op.ExpectAbsent:
		fmt.Fprintln(w, "expect: absent")
	case op.Kind == kv.KindCAS:
		fmt.Fprintf(w, "expect: %q\n", op.Expect)
	}
	if op.Kind == kv.KindPut || op.Kind == kv.KindCAS {
		fmt.Fprintf(w, "value: %q\n", op.Value)
	}
	fmt.Fprintf(w, "acked: %v\nretained: %d\nrecorded: %s\nreplayed: %v\n",
		r.Acked, r.Retained, r.Recorded.UTC().Format(time.RFC3339Nano), r.Replayed)
}
