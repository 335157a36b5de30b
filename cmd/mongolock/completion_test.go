package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
)

// "completion" prints each shell's script; the scripts ask the binary
// ("__complete") for commands, flags and lock keys.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, marker := range map[string]string{
		"bash": "__start_mongolock",
		"zsh":  "#compdef mongolock",
		"fish": "complete -c mongolock",
	} {
		r := runBinary(t, "", nil, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, marker) {
			t.Errorf("completion %s: want exit 0 and a script with %q:\n%.300s", shell, marker, r)
		}
	}
	for _, bad := range [][]string{{"completion"}, {"completion", "powershell"}, {"completion", "bash", "zsh"}} {
		if r := runBinary(t, "", nil, bad...); r.code != exitUsage || !strings.Contains(r.stderr, "bash, zsh or fish") {
			t.Errorf("%v: want exit 2 naming the shells:\n%s", bad, r)
		}
	}

	srv, flags := server(t)
	c := newClient(t, srv)
	for _, key := range []string{"jobs/a", "jobs/b", "other"} {
		if ok, err := c.Lock(testCtx(t), key, "me", mongolock.Expire(time.Minute)); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	tests := []struct {
		line      []string
		want      []string // completions, in order
		directive string
	}{
		{[]string{"sta"}, []string{"status\t"}, ":4"},
		{[]string{"status", "--js"}, []string{"--json\t"}, ":4"},
		{args([]string{"status"}, flags, []string{"jobs/"}), []string{"jobs/a", "jobs/b"}, ":4"},
		{args([]string{"release"}, flags, []string{""}), []string{"jobs/a", "jobs/b", "other"}, ":4"},
		{args([]string{"run"}, flags, []string{"o"}), []string{"other"}, ":4"},
		{args([]string{"lock"}, flags, []string{"jobs/b"}), []string{"jobs/b"}, ":4"},
		{args([]string{"run"}, flags, []string{"other", "--", ""}), nil, ":0"}, // the command: the shell's own completion
		{args([]string{"elect"}, flags, []string{"jobs/a"}), []string{"jobs/a"}, ":4"},
		{args([]string{"elect"}, flags, []string{"other", "--", ""}), nil, ":0"},
		{args([]string{"status"}, flags, []string{"other", ""}), nil, ":4"}, // one key only
		{[]string{"status", "--uri", refusedURI(t), ""}, nil, ":4"},         // no server: nothing, and no file names
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}, ":4"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.line, " "), func(t *testing.T) {
			r := runBinary(t, "", nil, append([]string{"__complete"}, tt.line...)...)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if r.code != 0 || len(lines) == 0 || lines[len(lines)-1] != tt.directive {
				t.Fatalf("want exit 0 and directive %s:\n%s", tt.directive, r)
			}
			got := lines[:len(lines)-1]
			if len(got) != len(tt.want) {
				t.Fatalf("completions %q, want %q", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("completion %d is %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}
