package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `mastership completion bash`, sourced in a real bash, completes
// subcommands and flags (as typed, -group) by asking the binary; fish's
// script names every command; an unknown shell is a usage error.
func TestCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	script := `source <(mastership completion bash)
complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _mastership_complete; echo "${COMPREPLY[*]}"; }
complete_words mastership divergence ""
complete_words mastership kv put -gr
complete_words mastership kv put --gr
complete_words mastership swi`
	cmd := exec.Command(bash, "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"list show replay discard help h", "-group", "--group", "switchover"}
	if len(lines) != len(want) {
		t.Fatalf("completions:\n%s\nwant %q", out, want)
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("completion %d: %q, want %q", i, lines[i], w)
		}
	}
	fish, _, code := run(t, "completion", "fish")
	if code != 0 || !strings.Contains(fish, "complete -c mastership") || !strings.Contains(fish, "divergence") {
		t.Errorf("completion fish: exit %d\n%.300s", code, fish)
	}
	zsh, _, code := run(t, "completion", "zsh")
	if code != 0 || !strings.HasPrefix(zsh, "#compdef mastership") {
		t.Errorf("completion zsh: exit %d\n%.300s", code, zsh)
	}
	if _, errOut, code := run(t, "completion", "tcsh"); code != 2 || !strings.Contains(errOut, `unknown shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d, %s", code, errOut)
	}
}
