package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what "version" prints; with --json, in this shape (fields
// may be added, never removed).
type versionInfo struct {
	Version  string `json:"version"`  // the module version; "(devel)" for a build from a checkout
	Revision string `json:"revision"` // the VCS revision, "" if unknown
	Modified bool   `json:"modified"` // the build had uncommitted changes
	Driver   string `json:"driver"`   // the MongoDB Go driver's version, "" if unknown
	Go       string `json:"go"`       // the Go version it was built with
	Platform string `json:"platform"` // GOOS/GOARCH
}

// buildVersion reads the version from the binary's build information.
func buildVersion() versionInfo {
	v := versionInfo{Version: "(unknown)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Version = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	for _, d := range bi.Deps {
		if d.Path == "go.mongodb.org/mongo-driver/v2" {
			v.Driver = d.Version
		}
	}
	return v
}

func (a *app) versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print mongolock's version and the Go version it was built with",
		Long: `Version prints the module version mongolock was built from ("(devel)" for a
build from a checkout), its VCS revision when known, the MongoDB driver's
version, and the Go version and platform. "mongolock --version" prints the
first line only.

--json prints, for scripts:

  {"version": "v1.2.0", "revision": "", "modified": false,
   "driver": "v2.10.0", "go": "go1.26.8", "platform": "linux/amd64"}

Exit codes: 0; 2 for a usage error.`,
		Example: `  mongolock version
  mongolock --version
  mongolock version --json | jq -r .version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion()
			if asJSON {
				enc := json.NewEncoder(a.io.out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return failure(err)
				}
				return nil
			}
			fmt.Fprintf(a.io.out, "mongolock %s\n", v.Version)
			if v.Revision != "" {
				modified := ""
				if v.Modified {
					modified = " (modified)"
				}
				fmt.Fprintf(a.io.out, "  revision  %s%s\n", v.Revision, modified)
			}
			if v.Driver != "" {
				fmt.Fprintf(a.io.out, "  driver    go.mongodb.org/mongo-driver/v2 %s\n", v.Driver)
			}
			fmt.Fprintf(a.io.out, "  go        %s %s\n", v.Go, v.Platform)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (shape above)")
	return cmd
}
