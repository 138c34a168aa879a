package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// versionInfo describes the binary from its build information (what
// `mastership version` and --version print after "mastership version"): the
// module's version (or "devel" for a build from a checkout), the commit
// and its time when the build recorded them, and the Go release.
func versionInfo(bi *debug.BuildInfo, ok bool) string {
	version, rev, when, dirty := "devel", "", "", false
	if ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	out := version
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " (commit " + rev
		if dirty {
			out += ", modified"
		}
		if when != "" {
			out += ", " + when
		}
		out += ")"
	}
	return out + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

func buildVersion() string { return versionInfo(debug.ReadBuildInfo()) }

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the binary's version, commit and Go release",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErr("version takes no arguments")
			}
			fmt.Fprintln(c.App.Writer, "mastership version", buildVersion())
			return nil
		},
	}
}
