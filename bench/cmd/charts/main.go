// Command charts measures this library against square/mongo-lock and the
// raw driver on the embedded server and writes two SVG charts:
//
//	latency.svg     the latency distribution (CDF) of one acquisition
//	                (TryAcquire vs square's XLock) and of an acquire +
//	                release cycle (ours, square's, the raw floor)
//	throughput.svg  acquire + release cycles per second against the number
//	                of goroutines, this library vs the raw driver's two
//	                findOneAndUpdate, on 10,000 keys
//
// Run from bench/:  go run ./cmd/charts -out ../docs
package main

import (
	"context"
	"flag"
	"fmt"
	"html"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mongolock/mongolock/bench/measure"
)

func main() {
	out := flag.String("out", "../docs", "directory to write latency.svg and throughput.svg to")
	n := flag.Int("n", 1000, "latency samples of each kind")
	point := flag.Duration("point", 2*time.Second, "duration of each throughput measurement")
	workersFlag := flag.String("workers", "1,2,4,8,16,32", "goroutine counts for the throughput chart")
	flag.Parse()
	var workers []int
	for _, s := range strings.Split(*workersFlag, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || w < 1 {
			log.Fatalf("bad -workers %q", *workersFlag)
		}
		workers = append(workers, w)
	}

	ctx := context.Background()
	srv, err := measure.StartServer(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close(ctx)
	env, err := measure.Setup(ctx, srv.URI(), "charts")
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close(ctx)

	// Latency.
	lat, err := env.MeasureLatency(ctx, *n)
	if err != nil {
		log.Fatal(err)
	}
	series := []series{
		{"mongolock TryAcquire (1 round trip)", "#1f77b4", "", lat.OursAcquire},
		{"square XLock (1 round trip)", "#d62728", "", lat.SquareAcquire},
		{"mongolock TryAcquire + Release (2)", "#1f77b4", "6,3", lat.OursCycle},
		{"square XLock + xUnlock query (2 of its 3)", "#d62728", "6,3", lat.SquareCycle},
		{"raw driver: 2 × findOneAndUpdate", "#7f7f7f", "2,3", lat.RawCycle},
	}
	fmt.Printf("latency, %d samples each (ms):\n%-44s %8s %8s %8s\n", *n, "", "p50", "p90", "p99")
	for _, s := range series {
		d := slices.Sorted(slices.Values(s.samples))
		fmt.Printf("%-44s %8.3f %8.3f %8.3f\n", s.name, ms(pct(d, 50)), ms(pct(d, 90)), ms(pct(d, 99)))
	}
	write(filepath.Join(*out, "latency.svg"), latencySVG(series, *n))

	// Throughput.
	const keys = 10000
	if err := env.Seed(ctx, keys); err != nil {
		log.Fatal(err)
	}
	ours := func(key string, _ int) error { return env.OursCycle(ctx, key) }
	raw := func(key string, i int) error { return measure.RawCycle(ctx, env.Raw, key, i) }
	var libRates, rawRates []float64
	fmt.Printf("\nthroughput, %v per point, %d keys (cycles/s):\n%10s %10s %10s %7s\n", *point, keys, "goroutines", "mongolock", "raw", "ratio")
	for _, w := range workers {
		// Alternate the two in four slices each, so that drift in the
		// machine's load (it is shared) falls on both alike.
		var l, r float64
		for k := 0; k < 4; k++ {
			if k%2 == 0 {
				l += measure.Throughput(ctx, w, keys, *point/4, ours) / 4
				r += measure.Throughput(ctx, w, keys, *point/4, raw) / 4
			} else {
				r += measure.Throughput(ctx, w, keys, *point/4, raw) / 4
				l += measure.Throughput(ctx, w, keys, *point/4, ours) / 4
			}
		}
		libRates = append(libRates, l)
		rawRates = append(rawRates, r)
		fmt.Printf("%10d %10.0f %10.0f %7.3f\n", w, l, r, l/r)
	}
	write(filepath.Join(*out, "throughput.svg"), throughputSVG(workers, libRates, rawRates, *point))
}

func write(path, svg string) {
	if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", path)
}

type series struct {
	name, color, dash string
	samples           []time.Duration
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct returns the p-th percentile of sorted d.
func pct(d []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

// chart is a plot area with linear axes.
type chart struct {
	b                       strings.Builder
	w, h, left, top, pw, ph float64
	xmin, xmax, ymin, ymax  float64
	logX                    bool
}

func newChart(title string, xmin, xmax, ymin, ymax float64, logX bool) *chart {
	c := &chart{w: 860, h: 440, left: 70, top: 40, pw: 430, ph: 340, xmin: xmin, xmax: xmax, ymin: ymin, ymax: ymax, logX: logX}
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", c.w, c.h, c.w, c.h)
	fmt.Fprintf(&c.b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&c.b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", c.left, html.EscapeString(title))
	fmt.Fprintf(&c.b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", c.left, c.top, c.pw, c.ph)
	return c
}

func (c *chart) x(v float64) float64 {
	if c.logX {
		return c.left + (math.Log2(v)-math.Log2(c.xmin))/(math.Log2(c.xmax)-math.Log2(c.xmin))*c.pw
	}
	return c.left + (v-c.xmin)/(c.xmax-c.xmin)*c.pw
}
func (c *chart) y(v float64) float64 { return c.top + c.ph - (v-c.ymin)/(c.ymax-c.ymin)*c.ph }

func (c *chart) xTick(v float64, label string) {
	x := c.x(v)
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", x, c.top, x, c.top+c.ph)
	fmt.Fprintf(&c.b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x, c.top+c.ph+16, label)
}
func (c *chart) yTick(v float64, label string) {
	y := c.y(v)
	fmt.Fprintf(&c.b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`+"\n", c.left, y, c.left+c.pw, y)
	fmt.Fprintf(&c.b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", c.left-6, y+4, label)
}
func (c *chart) labels(xl, yl string) {
	fmt.Fprintf(&c.b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", c.left+c.pw/2, c.top+c.ph+36, html.EscapeString(xl))
	fmt.Fprintf(&c.b, `<text transform="translate(18 %.0f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", c.top+c.ph/2, html.EscapeString(yl))
}
func (c *chart) line(xs, ys []float64, color, dash string, markers bool) {
	var pts []string
	for i := range xs {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.x(xs[i]), c.y(ys[i])))
	}
	dashAttr := ""
	if dash != "" {
		dashAttr = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	fmt.Fprintf(&c.b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", color, dashAttr, strings.Join(pts, " "))
	if markers {
		for i := range xs {
			fmt.Fprintf(&c.b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", c.x(xs[i]), c.y(ys[i]), color)
		}
	}
}
func (c *chart) legend(i int, name, color, dash string) {
	x, y := c.left+c.pw+15, c.top+10+float64(i)*20
	dashAttr := ""
	if dash != "" {
		dashAttr = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	fmt.Fprintf(&c.b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2"%s/>`+"\n", x, y, x+24, y, color, dashAttr)
	fmt.Fprintf(&c.b, `<text x="%.0f" y="%.0f">%s</text>`+"\n", x+30, y+4, html.EscapeString(name))
}
func (c *chart) note(i int, text string) {
	fmt.Fprintf(&c.b, `<text x="%.0f" y="%.0f" fill="#555" font-size="11">%s</text>`+"\n", c.left+c.pw+15, c.top+c.ph-float64(i)*15, html.EscapeString(text))
}
func (c *chart) String() string { return c.b.String() + "</svg>\n" }

func latencySVG(ss []series, n int) string {
	// x axis up to the largest p99 (rounded up), so the tails show without
	// one outlier flattening the rest.
	xmax := 0.0
	for _, s := range ss {
		d := slices.Sorted(slices.Values(s.samples))
		xmax = max(xmax, ms(pct(d, 99)))
	}
	xmax = math.Ceil(xmax)
	c := newChart("Latency distribution, embedded FerretDB (same run, interleaved)", 0, xmax, 0, 100, false)
	step := math.Max(1, math.Round(xmax/8))
	for v := 0.0; v <= xmax; v += step {
		c.xTick(v, strconv.FormatFloat(v, 'f', -1, 64))
	}
	for v := 0.0; v <= 100; v += 20 {
		c.yTick(v, fmt.Sprintf("%.0f%%", v))
	}
	c.labels("latency (ms)", "share of operations at most this fast")
	for i, s := range ss {
		d := slices.Sorted(slices.Values(s.samples))
		var xs, ys []float64
		for j, v := range d {
			if ms(v) > xmax {
				break
			}
			xs = append(xs, ms(v))
			ys = append(ys, 100*float64(j+1)/float64(len(d)))
		}
		c.line(xs, ys, s.color, s.dash, false)
		c.legend(i, s.name, s.color, s.dash)
		c.note(len(ss)-1-i, fmt.Sprintf("%s: p50 %.2f, p99 %.2f ms", shortName(s.name), ms(pct(d, 50)), ms(pct(d, 99))))
	}
	c.note(len(ss)+1, fmt.Sprintf("%d samples each; x axis cut at the largest p99", n))
	return c.String()
}

func shortName(s string) string {
	if i := strings.Index(s, " ("); i > 0 {
		return s[:i]
	}
	return s
}

func throughputSVG(workers []int, lib, raw []float64, point time.Duration) string {
	ymax := 0.0
	for i := range lib {
		ymax = max(ymax, lib[i], raw[i])
	}
	ymax = math.Ceil(ymax*1.15/100) * 100
	xmin, xmax := float64(workers[0]), float64(workers[len(workers)-1])
	if xmax == xmin {
		xmax = xmin * 2
	}
	c := newChart("Throughput: acquire + release cycles on 10,000 keys", xmin, xmax, 0, ymax, true)
	for _, w := range workers {
		c.xTick(float64(w), strconv.Itoa(w))
	}
	step := ymax / 5
	for v := 0.0; v <= ymax+1; v += step {
		c.yTick(v, fmt.Sprintf("%.0f", v))
	}
	c.labels("goroutines", "cycles per second")
	var xs []float64
	for _, w := range workers {
		xs = append(xs, float64(w))
	}
	c.line(xs, lib, "#1f77b4", "", true)
	c.legend(0, "mongolock TryAcquire + Release", "#1f77b4", "")
	c.line(xs, raw, "#7f7f7f", "6,3", true)
	c.legend(1, "raw driver: 2 × findOneAndUpdate", "#7f7f7f", "6,3")
	for i := range workers {
		c.note(len(workers)-1-i, fmt.Sprintf("%2d goroutines: %.0f vs %.0f /s (ratio %.2f)", workers[i], lib[i], raw[i], lib[i]/raw[i]))
	}
	c.note(len(workers)+1, fmt.Sprintf("%v per point; the server runs one command at a time", point))
	return c.String()
}
