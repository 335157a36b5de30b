package main

import (
	"encoding/json"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Doctor calls the embedded server behind its serializing proxy safe, and
// raw FerretDB 1.x unsafe.
func TestDoctor(t *testing.T) {
	t.Parallel()
	srv, _ := server(t)

	type doctorCase struct {
		name  string
		uri   string
		probe string
		code  int
		wants []string
	}
	tests := []doctorCase{
		{"server", srv.URI(), "2s", 0, []string{"majority, accepted", "never more than one holder", "verdict: SAFE"}},
	}
	if srv.Embedded() {
		tests[0].wants = append(tests[0].wants, "FerretDB", "standalone")
		tests = append(tests, doctorCase{"raw FerretDB", srv.DirectURI(), "10s", exitFailure, []string{"FerretDB", "NOT ATOMIC", "verdict: UNSAFE"}})
	} else {
		t.Log("MONGOLOCK_TEST_URI is set: no raw FerretDB to call unsafe")
	}
	t.Run("verdicts", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := runBinary(t, "", nil, "doctor", "--uri", tt.uri, "--database", srv.Database(), "--probe-time", tt.probe)
				t.Log(r.stdout)
				if r.code != tt.code {
					t.Errorf("exit code %d, want %d\n%s", r.code, tt.code, r)
				}
				for _, want := range tt.wants {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("output lacks %q:\n%s", want, r.stdout)
					}
				}
				lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
				if last := lines[len(lines)-1]; !strings.HasPrefix(last, "verdict: ") {
					t.Errorf("last line %q is not the verdict", last)
				}
			})
		}
	})

	t.Run("json", func(t *testing.T) {
		r := runBinary(t, "", nil, "doctor", "--uri", srv.URI(), "--database", srv.Database(), "--probe-time", "1s", "--json")
		if r.code != 0 {
			t.Fatal(r)
		}
		var got doctorJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v:\n%s", err, r.stdout)
		}
		if got.Verdict != "SAFE" || got.Problems == nil || len(got.Problems) != 0 || got.Warnings == nil || got.Database != srv.Database() || got.Collection != "lock" {
			t.Errorf("doctor --json: %+v", got)
		}
		topics := map[string]string{}
		for _, c := range got.Checks {
			if c.Level != "info" {
				topics[c.Topic] = c.Level
			}
			if strings.Contains(c.Message, "\n") {
				t.Errorf("a message on several lines: %q", c.Message)
			}
		}
		for _, topic := range []string{"server", "topology", "write concern", "read concern", "clock", "atomicity", "locks"} {
			if l := topics[topic]; l != "ok" && l != "warn" {
				t.Errorf("check %q: level %q, want ok or warn:\n%s", topic, l, r.stdout)
			}
		}
		for _, field := range []string{`"server"`, `"database"`, `"collection"`, `"checks"`, `"topic"`, `"level"`, `"message"`, `"verdict"`, `"problems"`, `"warnings"`} {
			if !strings.Contains(r.stdout, field) {
				t.Errorf("JSON lacks %s", field)
			}
		}
	})

	// The scratch collections are gone.
	names, err := srv.Client(t).Database(srv.Database()).ListCollectionNames(testCtx(t), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "mongolock_doctor_") {
			t.Errorf("scratch collection %s left behind", n)
		}
	}
}
