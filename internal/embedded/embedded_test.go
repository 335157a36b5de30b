package embedded

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"

	"github.com/mongolock/mongolock/internal/wireproxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})

	return s
}

func connect(t *testing.T, uri string) *mongo.Client {
	t.Helper()

	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Disconnect(ctx); err != nil {
			t.Error(err)
		}
	})

	return c
}

func TestStartClose(t *testing.T) {
	t.Parallel()

	s := start(t, Config{})
	ctx := context.Background()

	if !strings.HasSuffix(s.URI(), "/?directConnection=true") || s.URI() == s.DirectURI() {
		t.Fatalf("URI() = %q, DirectURI() = %q", s.URI(), s.DirectURI())
	}
	if s.Proxy() == nil || !strings.Contains(s.URI(), s.Proxy().Addr()) {
		t.Fatalf("URI %q is not the proxy's", s.URI())
	}

	for _, uri := range []string{s.URI(), s.DirectURI()} {
		c := connect(t, uri)
		if err := c.Ping(ctx, nil); err != nil {
			t.Fatalf("ping %s: %v", uri, err)
		}
	}

	// Data written through the proxy is visible directly.
	coll := connect(t, s.URI()).Database("db").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	n, err := connect(t, s.DirectURI()).Database("db").Collection("c").CountDocuments(ctx, bson.D{})
	if err != nil || n != 1 {
		t.Fatalf("CountDocuments = %d, %v; want 1", n, err)
	}

	if s.Proxy().Count("insert") != 1 {
		t.Errorf("proxy counted %d inserts, want 1", s.Proxy().Count("insert"))
	}
}

func TestTempDirRemoved(t *testing.T) {
	t.Parallel()

	s, err := Start(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("data directory: %v", err)
	}

	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data directory still exists after Close: %v", err)
	}
}

func TestDirKeptAndReused(t *testing.T) {
	t.Parallel()

	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()

	s1, err := Start(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := mongo.Connect(options.Client().ApplyURI(s1.URI()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Database("db").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "kept"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s2 := start(t, Config{Dir: dir})
	n, err := connect(t, s2.URI()).Database("db").Collection("c").CountDocuments(ctx, bson.D{{Key: "_id", Value: "kept"}})
	if err != nil || n != 1 {
		t.Fatalf("after restart: CountDocuments = %d, %v; want 1", n, err)
	}
}

func TestListen(t *testing.T) {
	t.Parallel()

	// Find a free port, then ask for it.
	p, err := wireproxy.New("127.0.0.1:1", wireproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addr()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	s := start(t, Config{Listen: addr})
	if s.Proxy().Addr() != addr {
		t.Fatalf("proxy listens on %s, want %s", s.Proxy().Addr(), addr)
	}

	// The address is taken now.
	if _, err := Start(context.Background(), Config{Listen: addr}); err == nil {
		t.Fatal("second Start on the same address: no error")
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(context.Background(), Config{Dir: file}); err == nil {
		t.Fatal("Start with a file as data directory: no error")
	}
}

func TestParallelStarts(t *testing.T) {
	t.Parallel()

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s, err := Start(context.Background(), Config{})
			if err != nil {
				t.Error(err)
				return
			}
			if err := wireproxy.Ping(context.Background(), s.Proxy().Addr()); err != nil {
				t.Error(err)
			}
			if err := s.Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestCloseContext(t *testing.T) {
	t.Parallel()

	s, err := Start(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}

	// A client connected directly keeps FerretDB's Run waiting (up to 3s).
	c, err := mongo.Connect(options.Client().ApplyURI(s.DirectURI()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background(), nil); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a direct client and a short context: %v, want DeadlineExceeded", err)
	}

	if err := c.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close after the client disconnected took %v", d)
	}
}

func BenchmarkStartClose(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		s, err := Start(ctx, Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
