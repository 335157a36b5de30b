// Command quickstart shows mongolock at work on the embedded MongoDB-
// compatible server (FerretDB behind the project's serializing proxy):
//
//	go run ./examples/quickstart
//
// Set MONGOLOCK_URI to run it against your own MongoDB instead.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/mongolock/mongolock"
	"github.com/mongolock/mongolock/mongolocktest"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	uri := os.Getenv("MONGOLOCK_URI")
	if uri == "" {
		fmt.Println("starting the embedded server (FerretDB on SQLite behind a serializing proxy)...")
		srv, err := mongolocktest.NewServer(ctx)
		if err != nil {
			return err
		}
		defer srv.Close(context.Background())
		uri = srv.URI()
	}
	fmt.Println("server:", mongolock.RedactURI(uri))

	c, err := mongolock.Connect(ctx, uri, mongolock.WithDatabase("quickstart"), mongolock.WithRetryInterval(20*time.Millisecond))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, _ = c.Collection().DeleteMany(ctx, map[string]any{})

	// 1. The owner-named API of the Python package.
	ok, err := c.Lock(ctx, "report", "alice", mongolock.Expire(time.Minute))
	fmt.Printf("alice locks \"report\": %v %v\n", ok, errText(err))
	ok, err = c.Lock(ctx, "report", "bob")
	fmt.Printf("bob locks \"report\" while alice holds it: %v %v\n", ok, errText(err))
	info, err := c.Info(ctx, "report")
	if err != nil {
		return err
	}
	fmt.Printf("info: owner=%s created=%s expires=%s fence=%d\n", info.Owner,
		info.Created.Format(time.RFC3339), info.Expire.Format(time.RFC3339), info.Fence)
	if err := c.Release(ctx, "report", "alice"); err != nil {
		return err
	}
	fmt.Println("alice releases \"report\"")

	// 2. Leases: four workers take turns; fences rise with each turn.
	fmt.Println("four workers take turns on \"counter\":")
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		inside    int
		lastFence int64
		problems  []string
	)
	for w := 1; w <= 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				l, err := c.Acquire(ctx, "counter", mongolock.Owner(fmt.Sprintf("worker-%d", w)), mongolock.Expire(10*time.Second))
				if err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
					return
				}
				mu.Lock()
				inside++
				if inside > 1 || l.Fence() <= lastFence {
					problems = append(problems, "two holders at once or a fence that did not rise")
				}
				lastFence = l.Fence()
				fmt.Printf("  %s holds it, fence %d\n", l.Owner(), l.Fence())
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
				if err := l.Release(ctx); err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()

	// 3. Do, and the error that names the holder.
	err = c.Do(ctx, "deploy", "carol", func(ctx context.Context) error {
		err := c.Do(ctx, "deploy", "dave", func(context.Context) error { return nil })
		var le *mongolock.LockedError
		if errors.As(err, &le) {
			fmt.Printf("dave cannot deploy: %v\n", err)
		}
		return nil
	}, mongolock.Expire(time.Minute))
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("guarantees broken: %v", problems)
	}
	fmt.Println("ok: one holder at a time, fences strictly increasing")
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}
