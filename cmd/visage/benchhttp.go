package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/visage/visage/internal/imageio"
)

// runBenchHTTP is a load generator for a running visaged: it identifies
// one image in a loop from N concurrent clients and prints latency
// percentiles and throughput per concurrency level.
func runBenchHTTP(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("bench http", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "visaged's base URL")
	keyFile := fs.String("key-file", "", "file holding an API key (default $VISAGE_KEY)")
	collection := fs.String("collection", "bench", "collection to identify against")
	enrollDir := fs.String("enroll", "", "first create the collection and enroll DIR/<person>/<photo> into it")
	imagePath := fs.String("image", "", "probe image")
	size := fs.String("size", "640x480", "centre-crop and scale the probe to WxH and send it as JPEG (empty: send the file as is)")
	clients := fs.String("clients", "1,2,4", "comma-separated concurrency levels")
	duration := fs.Duration("duration", 20*time.Second, "measuring time per level")
	warmup := fs.Duration("warmup", 3*time.Second, "unmeasured time before each level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, err := benchKey(*keyFile)
	if err != nil {
		return err
	}
	if key == "" || *imagePath == "" {
		return fmt.Errorf("usage: visage bench http --image FILE [--key-file FILE | $VISAGE_KEY] [--url URL] [--enroll DIR] [--clients 1,2,4]")
	}
	probe, err := os.ReadFile(*imagePath)
	if err != nil {
		return err
	}
	if *size != "" {
		if probe, err = resizedJPEG(probe, *size); err != nil {
			return err
		}
	}
	c := &loadClient{http: &http.Client{Timeout: time.Minute}, url: strings.TrimRight(*url, "/"), key: key}
	if *enrollDir != "" {
		n, err := c.enrollDir(ctx, *collection, *enrollDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "bench http: enrolled %d photos into %s\n", n, *collection)
	}
	// One request first: it must succeed, and it shows what is measured.
	if _, err := c.identify(ctx, *collection, probe); err != nil {
		return err
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("--clients: bad level %q", s)
		}
		c.load(ctx, *collection, probe, n, *warmup)
		lat, errs, el := c.load(ctx, *collection, probe, n, *duration)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		pct := func(p float64) float64 {
			if len(lat) == 0 {
				return 0
			}
			return ms(lat[min(len(lat)-1, int(p*float64(len(lat))))])
		}
		fmt.Fprintf(env.stdout, "http identify clients=%d image=%s bytes=%d requests=%d errors=%d rps=%.1f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f\n",
			n, *size, len(probe), len(lat), errs, float64(len(lat))/el.Seconds(), pct(0.5), pct(0.9), pct(0.99))
	}
	return nil
}

// benchKey is the API key of a benchmark: the file's content, else
// $VISAGE_KEY.
func benchKey(keyFile string) (string, error) {
	if keyFile == "" {
		return os.Getenv("VISAGE_KEY"), nil
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// resizedJPEG centre-crops an image to the aspect of size and scales it
// to size (nearest neighbour is enough for a probe), as JPEG quality 90.
func resizedJPEG(data []byte, size string) ([]byte, error) {
	var w, h int
	if _, err := fmt.Sscanf(size, "%dx%d", &w, &h); err != nil || w < 1 || h < 1 {
		return nil, fmt.Errorf("--size: want WxH, got %q", size)
	}
	img, err := imageio.Decode(data, imageio.DefaultLimits())
	if err != nil {
		return nil, err
	}
	src := image.NewRGBA(image.Rect(0, 0, img.Width, img.Height))
	for i := 0; i < img.Width*img.Height; i++ {
		copy(src.Pix[i*4:i*4+3], img.Pix[i*3:i*3+3])
		src.Pix[i*4+3] = 255
	}
	cw, ch := img.Width, img.Width*h/w
	if ch > img.Height {
		cw, ch = img.Height*w/h, img.Height
	}
	x0, y0 := (img.Width-cw)/2, (img.Height-ch)/2
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			dst.Set(x, y, src.At(x0+x*cw/w, y0+y*ch/h))
		}
	}
	var out bytes.Buffer
	if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 90}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

type loadClient struct {
	http *http.Client
	url  string
	key  string
}

func (c *loadClient) send(ctx context.Context, method, path, ct string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

func multipartImages(data ...[]byte) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i, d := range data {
		fw, _ := w.CreateFormFile("image", fmt.Sprintf("image%d", i))
		fw.Write(d)
	}
	w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

func (c *loadClient) identify(ctx context.Context, collection string, img []byte) (time.Duration, error) {
	body, ct := multipartImages(img)
	t := time.Now()
	b, status, err := c.send(ctx, "POST", "/v1/collections/"+collection+"/identify", ct, body)
	el := time.Since(t)
	if err != nil {
		return el, err
	}
	if status != http.StatusOK {
		return el, fmt.Errorf("identify: status %d: %s", status, b)
	}
	return el, nil
}

// load runs n clients for d and returns the successful latencies.
func (c *loadClient) load(ctx context.Context, collection string, img []byte, n int, d time.Duration) ([]time.Duration, int, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				el, err := c.identify(ctx, collection, img)
				mu.Lock()
				switch {
				case err == nil:
					lat = append(lat, el)
				case ctx.Err() == nil:
					errs++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, errs, time.Since(start)
}

// enrollDir creates a collection and enrolls DIR/<person>/<photo>.
func (c *loadClient) enrollDir(ctx context.Context, collection, dir string) (int, error) {
	body, _ := json.Marshal(map[string]any{"name": collection})
	if b, status, err := c.send(ctx, "POST", "/v1/collections", "application/json", body); err != nil || (status != http.StatusCreated && status != http.StatusConflict) {
		return 0, fmt.Errorf("create collection: %d %s %v", status, b, err)
	}
	people, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range people {
		if !p.IsDir() {
			continue
		}
		body, _ := json.Marshal(map[string]any{"external_id": p.Name(), "display_name": p.Name()})
		b, status, err := c.send(ctx, "POST", "/v1/collections/"+collection+"/subjects", "application/json", body)
		if err != nil || status != http.StatusCreated {
			return n, fmt.Errorf("create subject %s: %d %s %v", p.Name(), status, b, err)
		}
		var sub struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &sub); err != nil {
			return n, err
		}
		files, err := os.ReadDir(filepath.Join(dir, p.Name()))
		if err != nil {
			return n, err
		}
		var photos [][]byte
		for _, f := range files {
			d, err := os.ReadFile(filepath.Join(dir, p.Name(), f.Name()))
			if err != nil {
				return n, err
			}
			photos = append(photos, d)
		}
		mb, ct := multipartImages(photos...)
		b, status, err = c.send(ctx, "POST", "/v1/collections/"+collection+"/subjects/"+sub.ID+"/faces", ct, mb)
		if status == http.StatusUnprocessableEntity {
			continue // every photo refused (no face, quality gates): a subject without faces
		}
		if err != nil || status >= 300 {
			return n, fmt.Errorf("enroll %s: %d %s %v", p.Name(), status, b, err)
		}
		n += len(photos)
	}
	return n, nil
}
