package main

import (
	"context"
	"slices"
	"time"

	"github.com/spf13/cobra"
)

// completionShells are the shells "completion" writes scripts for.
var completionShells = []string{"bash", "zsh", "fish"}

// completionTimeout bounds looking up lock keys for a completion: a shell
// waits for it.
const completionTimeout = 2 * time.Second

func (a *app) completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Completion prints a script that makes the shell complete mongolock's
commands and flags, and lock keys (read from the server of --uri or
MONGOLOCK_URI, if it answers within 2s) for run, lock, status and release.

Load it in the current shell, or install it where the shell looks for
completions (see the examples).

Exit codes: 0; 2 for a usage error (no shell, or one it does not know).`,
		Example: `  # bash (needs the bash-completion package): now, then for good
  source <(mongolock completion bash)
  mongolock completion bash > ~/.local/share/bash-completion/completions/mongolock

  # zsh: a directory on $fpath, then restart zsh
  mongolock completion zsh > "${fpath[1]}/_mongolock"

  # fish
  mongolock completion fish > ~/.config/fish/completions/mongolock.fish`,
		ValidArgs: completionShells,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) != 1:
				return usageError("want one shell (bash, zsh or fish), got %d arguments", len(args))
			case !slices.Contains(completionShells, args[0]):
				return usageError("no completion for %q: want bash, zsh or fish", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			var err error
			switch args[0] {
			case "bash":
				err = root.GenBashCompletionV2(a.io.out, true)
			case "zsh":
				err = root.GenZshCompletion(a.io.out)
			case "fish":
				err = root.GenFishCompletion(a.io.out, true)
			}
			if err != nil {
				return failure(err)
			}
			return nil
		},
	}
}

// completeKey completes a command's KEY argument with the keys of the
// locks on the server (--uri or $MONGOLOCK_URI) that start with what was
// typed, if the server answers within completionTimeout; never with file
// names. Once the key is given, the command of run and elect follows: the
// shell completes it as usual.
func (a *app) completeKey(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 || cmd.Flags().Changed("key") {
		if cmd.Name() == "run" || cmd.Name() == "elect" {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	uri := a.uri
	if !cmd.Flags().Changed("uri") {
		uri = a.getenv(envURI)
	}
	// Completion skips the commands' checks: take the collection from the
	// environment as they would.
	if uri == "" || a.checkGlobalFlags(cmd) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	c, err := a.connectURI(ctx, uri, 0)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.close()
	locks, err := c.List(ctx, toComplete)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	keys := make([]string, 0, len(locks))
	for _, l := range locks {
		keys = append(keys, l.Key)
	}
	return keys, cobra.ShellCompDirectiveNoFileComp
}
