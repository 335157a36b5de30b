package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manDate is the date the man pages carry. It is fixed, so that the
// committed pages (docs/man) change only when the commands do; update it
// with a release.
var manDate = time.Date(2026, time.December, 1, 0, 0, 0, 0, time.UTC)

// manDir is where the committed man pages live, relative to this
// package ("go generate" writes them there).
const manDir = "../../docs/man"

//go:generate go run . man --dir ../../docs/man

func (a *app) manCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "man [COMMAND] [--dir DIR]",
		Short: "Print or write the man pages",
		Long: `Man prints the man page of mongolock, or of COMMAND ("mongolock man run" is
mongolock-run(1)), generated from the commands' help. With --dir it writes
every page instead, one file per command (mongolock.1, mongolock-run.1,
...), to install in a man directory. The same pages are in docs/man.

Exit codes: 0; 1 if the pages could not be written; 2 for a usage error.`,
		Example: `  mongolock man | man -l -
  mongolock man run | man -l -
  sudo mongolock man --dir /usr/local/share/man/man1`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return usageError("at most one COMMAND, got %d arguments", len(args))
			case len(args) == 1 && dir != "":
				return usageError("give COMMAND or --dir, not both: --dir writes every page")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			// The pages come from a tree of their own, whose help texts
			// manTree adapts to man's markdown.
			tree := a.manTree()
			if dir != "" {
				if err := writeManPages(tree, dir); err != nil {
					return failure(err)
				}
				return nil
			}
			target := tree
			if len(args) == 1 {
				found, rest, err := tree.Find(args)
				if err != nil || len(rest) > 0 || found == tree || !found.IsAvailableCommand() {
					return usageError("no command %q", args[0])
				}
				target = found
			}
			if err := doc.GenMan(target, manHeader(), a.io.out); err != nil {
				return failure(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "write every page to this directory")
	return cmd
}

// manHeader is the header of every page.
func manHeader() *doc.GenManHeader {
	d := manDate
	return &doc.GenManHeader{Section: "1", Date: &d, Source: "mongolock", Manual: "mongolock manual"}
}

// manTree is a fresh command tree for the man pages: without cobra's tag,
// and with the help texts' indented blocks (JSON, tables) as markdown code
// blocks, which man shows as they are.
func (a *app) manTree() *cobra.Command {
	root := (&app{io: a.io, getenv: func(string) string { return "" }}).rootCommand()
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		c.DisableAutoGenTag = true
		c.Long = manMarkdown(c.Long)
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	visit(root)
	return root
}

// indented matches a help text's line indented by two spaces or more.
var indented = regexp.MustCompile(`^  +\S`)

// manMarkdown turns a help text into markdown: runs of indented lines
// become code blocks, and markdown's own characters in the prose are
// escaped.
func manMarkdown(long string) string {
	var b strings.Builder
	inBlock := false
	for _, line := range strings.Split(long, "\n") {
		switch {
		case indented.MatchString(line):
			if !inBlock {
				b.WriteString("\n")
				inBlock = true
			}
			b.WriteString("    " + line + "\n")
		default:
			if inBlock && strings.TrimSpace(line) != "" {
				b.WriteString("\n")
			}
			inBlock = false
			b.WriteString(markdownEscaper.Replace(line) + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// markdownEscaper escapes the characters markdown would take for markup.
var markdownEscaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "`", "\\`", "<", `\<`, "[", `\[`)

// writeManPages writes the pages of tree to dir, one per command, and
// removes pages of commands that no longer exist.
func writeManPages(tree *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "mongolock*.1"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	pages, err := manPages(tree)
	if err != nil {
		return err
	}
	for name, page := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), page, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// manPages renders the page of every available command of tree, by file
// name.
func manPages(tree *cobra.Command) (map[string][]byte, error) {
	pages := map[string][]byte{}
	var visit func(c *cobra.Command) error
	visit = func(c *cobra.Command) error {
		if c.HasParent() && (!c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand()) {
			return nil
		}
		var buf bytes.Buffer
		if err := doc.GenMan(c, manHeader(), &buf); err != nil {
			return fmt.Errorf("the man page of %s: %w", c.CommandPath(), err)
		}
		pages[strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"] = buf.Bytes()
		for _, sub := range c.Commands() {
			if err := visit(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return pages, visit(tree)
}
