package config

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/mastership/mastership"

// The libraries (the naming node, the agent, recovery, the configuration
// and the agent's client) pull in no command-line stack: the urfave/cli
// glue lives in cmd/mastership alone. The command itself is the control:
// its dependencies must show urfave/cli, or the check sees nothing.
func TestLibrariesDoNotImportTheCLI(t *testing.T) {
	libs := []string{module + "/naming", module + "/agent", module + "/recover", module + "/config", module + "/agent/client"}
	readModuleDirs(t)
	deps := goListDeps(t, libs...)
	for _, lib := range libs {
		if !deps[lib] {
			t.Fatalf("go list -deps does not list %s itself (%d packages listed)", lib, len(deps))
		}
	}
	for dep := range deps {
		if strings.HasPrefix(dep, "github.com/urfave/cli") {
			t.Errorf("a library depends on %s (go list -deps %s)", dep, strings.Join(libs, " "))
		}
	}
	cli := false
	for dep := range goListDeps(t, module+"/cmd/mastership") {
		cli = cli || strings.HasPrefix(dep, "github.com/urfave/cli")
	}
	if !cli {
		t.Fatal("cmd/mastership shows no urfave/cli among its dependencies: the check would miss one")
	}
}

// readModuleDirs reads every directory of the module. go test caches a
// result with the files and directories the test opened (a directory by
// its entries' names, sizes and times), not with what a child process
// read: without this, a pass would be replayed from the cache after a
// file of another package changed its imports.
func readModuleDirs(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("..", "go.mod")); err != nil {
		t.Fatalf("the module root is not the parent directory: %v", err)
	}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// goListDeps is the set of packages go list -deps prints for pkgs.
func goListDeps(t *testing.T, pkgs ...string) map[string]bool {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, serr := os.Stat(goBin); os.Getenv("GOROOT") == "" || serr != nil {
			t.Fatalf("no go command on PATH or in $GOROOT/bin: %v", err)
		}
	}
	cmd := exec.Command(goBin, append([]string{"list", "-deps"}, pkgs...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", strings.Join(pkgs, " "), err, stderr.String())
	}
	deps := map[string]bool{}
	for _, line := range strings.Fields(string(out)) {
		deps[line] = true
	}
	return deps
}
