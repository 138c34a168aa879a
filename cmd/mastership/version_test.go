package main

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionInfo(t *testing.T) {
	tail := " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, "devel" + tail},
		{"a checkout without vcs stamps", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "devel" + tail},
		{"a release", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-02T00:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			true, "v1.2.3 (commit 0123456789ab, 2026-12-02T00:00:00Z)" + tail},
		{"a modified checkout", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}},
			true, "devel (commit abc, modified)" + tail},
	} {
		if got := versionInfo(tc.bi, tc.ok); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// `mastership version` and `mastership --version` print the same line;
// an argument is a usage error.
func TestVersionCommand(t *testing.T) {
	var out1, out2, errOut bytes.Buffer
	if code := run(context.Background(), []string{"mastership", "version"}, &out1, &errOut); code != exitOK {
		t.Fatalf("version: exit %d, %s", code, errOut.String())
	}
	if code := run(context.Background(), []string{"mastership", "--version"}, &out2, &errOut); code != exitOK {
		t.Fatalf("--version: exit %d, %s", code, errOut.String())
	}
	want := "mastership version " + buildVersion() + "\n"
	if out1.String() != want || out2.String() != want {
		t.Fatalf("version %q, --version %q; want %q", out1.String(), out2.String(), want)
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"mastership", "version", "now"}, &out1, &errOut); code != exitUsage || !strings.Contains(errOut.String(), "no arguments") {
		t.Fatalf("version now: exit %d, %q", code, errOut.String())
	}
}

// JSON output keeps <, > and & as written (Go escapes them by default).
func TestJSONOutputUnescaped(t *testing.T) {
	var b bytes.Buffer
	if err := writeJSON(&b, map[string]string{"reason": "epoch 1.2 > 1.1 & <none>"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"epoch 1.2 > 1.1 & <none>"`) {
		t.Fatalf("output %q escapes the text", b.String())
	}
}
