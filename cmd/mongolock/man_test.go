package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The man pages in docs/man are those the command tree generates: a
// change to a command's help must regenerate them ("go generate
// ./cmd/mongolock").
func TestManPagesCurrent(t *testing.T) {
	t.Parallel()
	a := &app{io: stdio{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &bytes.Buffer{}}, getenv: func(string) string { return "" }}
	pages, err := manPages(a.manTree())
	if err != nil {
		t.Fatal(err)
	}
	committed, err := filepath.Glob(filepath.Join(manDir, "*.1"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range committed {
		names = append(names, filepath.Base(f))
	}
	for name, page := range pages {
		if !slices.Contains(names, name) {
			t.Errorf("docs/man/%s is missing: run go generate ./cmd/mongolock", name)
			continue
		}
		got, err := os.ReadFile(filepath.Join(manDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, page) {
			t.Errorf("docs/man/%s is stale: run go generate ./cmd/mongolock", name)
		}
	}
	for _, name := range names {
		if _, ok := pages[name]; !ok {
			t.Errorf("docs/man/%s is not a command's page any more: run go generate ./cmd/mongolock", name)
		}
	}
	for _, want := range []string{"mongolock.1", "mongolock-run.1", "mongolock-lock.1", "mongolock-status.1", "mongolock-release.1", "mongolock-completion.1"} {
		if _, ok := pages[want]; !ok {
			t.Errorf("no page %s", want)
		}
	}
	if _, ok := pages["mongolock-demo-worker.1"]; ok {
		t.Error("a page for the hidden demo-worker")
	}
}

// "mongolock man" prints a page, "mongolock man --dir" writes them all.
func TestManCommand(t *testing.T) {
	t.Parallel()
	r := runBinary(t, "", nil, "man", "run")
	for _, want := range []string{`.TH "MONGOLOCK-RUN" "1"`, ".SH SYNOPSIS", "mongolock run KEY", ".SH OPTIONS", "nonblock", ".SH EXAMPLE"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("man run: want exit 0 and %q:\n%.400s", want, r)
		}
	}
	if r := runBinary(t, "", nil, "man"); r.code != 0 || !strings.Contains(r.stdout, `.TH "MONGOLOCK" "1"`) {
		t.Errorf("man: want mongolock(1):\n%.400s", r)
	}
	dir := filepath.Join(t.TempDir(), "man1")
	if r := runBinary(t, "", nil, "man", "--dir", dir); r.code != 0 {
		t.Fatal(r)
	}
	for _, name := range []string{"mongolock.1", "mongolock-lock.1", "mongolock-man.1"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		want, werr := os.ReadFile(filepath.Join(manDir, name))
		if err != nil || werr != nil || !bytes.Equal(got, want) {
			t.Errorf("man --dir wrote %s unlike docs/man: %v %v", name, err, werr)
		}
	}
	for _, bad := range [][]string{{"man", "nosuch"}, {"man", "run", "--dir", dir}, {"man", "run", "lock"}} {
		if r := runBinary(t, "", nil, bad...); r.code != exitUsage {
			t.Errorf("%v: want exit 2:\n%s", bad, r)
		}
	}
}
