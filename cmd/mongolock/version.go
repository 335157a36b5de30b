package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print mongolock's version and the Go version it was built with",
		Long: `Version prints the module version mongolock was built from ("(devel)" for a
build from a checkout), its VCS revision when known, the MongoDB driver's
version, and the Go version and platform.

Exit code: 0.`,
		Example: `  mongolock version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			version, revision, driver := "(unknown)", "", ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				version = bi.Main.Version
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision":
						revision = s.Value
					case "vcs.modified":
						if s.Value == "true" {
							revision += " (modified)"
						}
					}
				}
				for _, d := range bi.Deps {
					if d.Path == "go.mongodb.org/mongo-driver/v2" {
						driver = d.Version
					}
				}
			}
			fmt.Fprintf(a.io.out, "mongolock %s\n", version)
			if revision != "" {
				fmt.Fprintf(a.io.out, "  revision  %s\n", revision)
			}
			if driver != "" {
				fmt.Fprintf(a.io.out, "  driver    go.mongodb.org/mongo-driver/v2 %s\n", driver)
			}
			fmt.Fprintf(a.io.out, "  go        %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
