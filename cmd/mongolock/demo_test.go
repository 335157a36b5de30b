package main

import (
	"strings"
	"testing"
)

// The demo, as a newcomer runs it (with its own embedded server) and with
// a server given, ends with every guarantee held.
func TestDemo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"embedded server", []string{"demo", "--workers", "3", "--duration", "5s"}},
		{"given server", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := tt.args
			if a == nil {
				_, flags := server(t)
				a = args([]string{"demo", "--workers", "3", "--duration", "4s"}, flags)
			}
			r := runBinary(t, "", nil, a...)
			if r.code != 0 {
				t.Fatalf("want exit 0:\n%s", r)
			}
			for _, want := range []string{
				"worker-1", "worker-2", "worker-3", "has the lock",
				"KILLED with SIGKILL while holding the lock",
				"the dead holder's lease expired",
				"overlapping sections:        0  ok",
				"fences strictly increasing:  yes  ok",
				"recovery from the kill:",
				"kept alive",
				"hand-off latency:            median",
				"Every guarantee held",
			} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}
