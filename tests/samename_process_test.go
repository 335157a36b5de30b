package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

// TestSameNameWorkerProcesses is the seed README's "Lock stealing and
// releasing" sequence with the two same-named workers in two OS processes,
// using the owner-named API: worker1 (this process) locks with a 30s-like
// short expiry; worker2 (a child process) takes the lock over once it has
// expired; worker1 then releases — which, with the Python package, freed
// worker2's lock so that worker3 could take it while worker2 still worked.
// Here worker1's release is ErrNotHeld, worker3 is refused, and worker2's
// own release succeeds.
func TestSameNameWorkerProcesses(t *testing.T) {
	srv := mongolocktest.Start(t)
	ctx := testCtx(t)
	worker1 := newClient(t, srv)
	worker3 := newClient(t, srv)

	mustLock(t, worker1, "task", "worker", mongolock.Expire(200*time.Millisecond))

	cmd := exec.Command(os.Args[0], "-test.run=^TestSameNameHelperProcess$")
	cmd.Env = append(os.Environ(), "SAMENAME_HELPER=1", "SAMENAME_URI="+srv.URI(), "SAMENAME_DB="+srv.Database())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	expect := func(want string) {
		t.Helper()
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), "worker2: ") {
				if got := strings.TrimPrefix(lines.Text(), "worker2: "); got != want {
					t.Fatalf("worker2 said %q; want %q", got, want)
				}
				return
			}
		}
		t.Fatalf("worker2 ended before saying %q", want)
	}
	expect("acquired")

	if err := worker1.Release(ctx, "task", "worker"); !errors.Is(err, mongolock.ErrNotHeld) {
		t.Fatalf("worker1's Release after worker2 took over: %v; want ErrNotHeld", err)
	}
	if ok, err := worker3.Lock(ctx, "task", "worker3"); ok || err != nil {
		t.Fatalf("worker3's Lock while worker2 works = %v, %v; want false", ok, err)
	}
	stdin.Close() // worker2 finishes its work
	expect("released <nil>")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker2: %v", err)
	}
	if ok, err := worker3.Lock(ctx, "task", "worker3"); !ok || err != nil {
		t.Fatalf("worker3's Lock after worker2 released = %v, %v; want true", ok, err)
	}
}

// TestSameNameHelperProcess is worker2 of TestSameNameWorkerProcesses.
func TestSameNameHelperProcess(t *testing.T) {
	if os.Getenv("SAMENAME_HELPER") != "1" {
		t.Skip("helper process for TestSameNameWorkerProcesses")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := mongolock.Connect(ctx, os.Getenv("SAMENAME_URI"), mongolock.WithDatabase(os.Getenv("SAMENAME_DB")),
		mongolock.WithRetryInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ok, err := c.Lock(ctx, "task", "worker", mongolock.Timeout(10*time.Second), mongolock.Expire(time.Hour))
	if !ok || err != nil {
		t.Fatalf("worker2 Lock = %v, %v", ok, err)
	}
	fmt.Println("worker2: acquired")
	_, _ = io.Copy(io.Discard, os.Stdin) // work until the parent closes stdin
	fmt.Printf("worker2: released %v\n", c.Release(ctx, "task", "worker"))
}
