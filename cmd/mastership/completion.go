package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

const completionShells = "bash, zsh or fish"

// completionCommand prints a shell's completion script. The bash and zsh
// scripts ask the binary itself (urfave/cli's --generate-bash-completion)
// for the commands and flags that may follow what is typed; fish's lists
// them all.
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for " + completionShells,
		UsageText: "mastership completion bash|zsh|fish",
		Description: "bash: source <(mastership completion bash), or save it in /etc/bash_completion.d/mastership\n" +
			"zsh:  source <(mastership completion zsh), or save it as _mastership on $fpath\n" +
			"fish: mastership completion fish > ~/.config/fish/completions/mastership.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr("completion: want one shell, %s", completionShells)
			}
			w := c.App.Writer
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(w, bashCompletion)
			case "zsh":
				fmt.Fprint(w, zshCompletion)
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Fprint(w, s)
			default:
				return usageErr("completion: unknown shell %q: want %s", c.Args().First(), completionShells)
			}
			return nil
		},
	}
}

const bashCompletion = `# bash completion for mastership
_mastership_complete() {
  local cur words opts
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  if [[ "$cur" == -* ]]; then
    words+=("$cur")
  fi
  opts=$("${words[0]}" "${words[@]:1}" --generate-bash-completion 2>/dev/null)
  if [[ "$cur" == -* && "$cur" != --* ]]; then
    opts="${opts//--/-}" # the flags as they are usually typed: -group
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _mastership_complete mastership
`

const zshCompletion = `#compdef mastership
# zsh completion for mastership
_mastership() {
  local -a opts
  local cur=${words[CURRENT]}
  local -a req=("${words[@]:0:CURRENT-1}")
  if [[ "$cur" == -* ]]; then
    req+=("$cur")
  fi
  opts=("${(@f)$(${req[1]} "${req[@]:1}" --generate-bash-completion 2>/dev/null)}")
  if [[ "$cur" == -* && "$cur" != --* ]]; then
    opts=("${opts[@]//--/-}")
  fi
  if [[ -n "${opts[1]}" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _mastership mastership
`
