package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// The mutual-exclusion test: goroutines in this process and in several
// child processes contend for one key. Inside each critical section a
// worker appends "enter" and "leave" lines, with its fence, to a shared
// ledger file opened with O_APPEND, so the file's order is the real order
// of the writes across all processes. If two sections ever overlapped, an
// "enter" would follow another "enter" before its "leave".

const (
	mutexKey        = "mutex"
	helperEnv       = "MONGOLOCK_MUTEX_HELPER"
	parentWorkers   = 16
	childProcesses  = 4
	childWorkers    = 4
	sectionsPerWork = 6
)

func TestMutualExclusion(t *testing.T) {
	if testing.Short() {
		t.Skip("contention test")
	}
	srv := mongolocktest.Start(t)
	ledger := filepath.Join(t.TempDir(), "ledger")

	var children []*exec.Cmd
	for i := 0; i < childProcesses; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMutexHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(),
			helperEnv+"=1",
			"MUTEX_URI="+srv.URI(),
			"MUTEX_DB="+srv.Database(),
			"MUTEX_LEDGER="+ledger,
			"MUTEX_NAME=proc"+strconv.Itoa(i),
		)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("child output:\n%s", out)
			}
		})
		children = append(children, cmd)
	}

	// Two Clients shared by the parent's goroutines, as a program would.
	clients := []*mongolock.Client{
		newClient(t, srv, mongolock.WithRetryInterval(5*time.Millisecond)),
		newClient(t, srv, mongolock.WithRetryInterval(5*time.Millisecond)),
	}
	if err := contend(testCtx(t), clients, parentWorkers, "parent", ledger); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range children {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
	}
	checkLedger(t, ledger, parentWorkers*sectionsPerWork+childProcesses*childWorkers*sectionsPerWork)
}

// TestMutexHelperProcess is a child of TestMutualExclusion, not a test.
func TestMutexHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestMutualExclusion")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := mongolock.Connect(ctx, os.Getenv("MUTEX_URI"),
		mongolock.WithDatabase(os.Getenv("MUTEX_DB")), mongolock.WithRetryInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := contend(ctx, []*mongolock.Client{c}, childWorkers, os.Getenv("MUTEX_NAME"), os.Getenv("MUTEX_LEDGER")); err != nil {
		t.Fatal(err)
	}
}

// contend runs workers goroutines, each taking the lock sectionsPerWork
// times and writing its critical section to the ledger.
func contend(ctx context.Context, clients []*mongolock.Client, workers int, name, ledger string) error {
	f, err := os.OpenFile(ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			id := fmt.Sprintf("%s/%d", name, w)
			for i := 0; i < sectionsPerWork; i++ {
				l, err := c.Acquire(ctx, mutexKey, mongolock.Owner(id), mongolock.Expire(time.Minute))
				if err != nil {
					errs <- fmt.Errorf("%s: Acquire: %w", id, err)
					return
				}
				_, err1 := fmt.Fprintf(f, "enter %d %s\n", l.Fence(), id)
				time.Sleep(time.Millisecond)
				_, err2 := fmt.Fprintf(f, "leave %d %s\n", l.Fence(), id)
				if err := l.Release(ctx); err != nil || err1 != nil || err2 != nil {
					errs <- fmt.Errorf("%s: section: %v %v %v", id, err, err1, err2)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func checkLedger(t *testing.T, path string, want int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		open      string // the section inside, "" if none
		lastFence int64
		sections  int
		procs     = map[string]bool{}
	)
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var op, id string
		var fence int64
		if _, err := fmt.Sscanf(sc.Text(), "%s %d %s", &op, &fence, &id); err != nil {
			t.Fatalf("ledger line %d %q: %v", line, sc.Text(), err)
		}
		switch op {
		case "enter":
			if open != "" {
				t.Fatalf("ledger line %d: %s entered while %s was inside: two holders at once", line, id, open)
			}
			if fence <= lastFence {
				t.Fatalf("ledger line %d: fence %d after %d: fences must increase", line, fence, lastFence)
			}
			open, lastFence = id, fence
			procs[strings.Split(id, "/")[0]] = true
		case "leave":
			if open != id || fence != lastFence {
				t.Fatalf("ledger line %d: %s left while %q was inside", line, id, open)
			}
			open = ""
			sections++
		}
	}
	if sections != want {
		t.Fatalf("%d critical sections in the ledger; want %d", sections, want)
	}
	if len(procs) != childProcesses+1 {
		t.Fatalf("sections from %d processes; want %d", len(procs), childProcesses+1)
	}
}
