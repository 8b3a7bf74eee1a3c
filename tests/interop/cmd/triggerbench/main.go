// Command triggerbench starts Stories through the Go SDK's public API and reports throughput,
// latency and its own CPU time, for the side-by-side benchmark in benchmarks/bench_trigger_sdks.py.
//
//	triggerbench -story NAME -calls 300 -parallel 16 [-tokens] [-token-prefix P] [-unthrottled]
//
// The client comes from the environment the SDK reads (KUBECONFIG, BUBU_TARGET_STORY_NAMESPACE,
// BUBU_K8S_*). As shipped, sdk.StartStory uses k8s.SharedClient, whose REST config allows 20
// requests/s with bursts of 40 and cannot be changed through the environment. -unthrottled lifts
// that limit through the public API instead: k8s.GetConfig() (the SDK's own config, defaults and
// env overrides included), then QPS = -1 (client-go builds no rate limiter for a negative QPS),
// then k8s.NewClientForConfig and Client.TriggerStory, which is what sdk.StartStory calls.
//
// One warm-up trigger (not timed) creates the client and its connection first. The result is one
// JSON object on stdout: calls, seconds, latencies in ms, and CPU seconds (user+system, from
// getrusage) spent by this process during the timed calls.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	sdk "github.com/bubustack/bubu-sdk-go"
	"github.com/bubustack/bubu-sdk-go/k8s"
)

type result struct {
	Calls       int       `json:"calls"`
	Seconds     float64   `json:"seconds"`
	LatenciesMs []float64 `json:"latencies_ms"`
	CPUSeconds  float64   `json:"cpu_seconds"`
	Errors      int       `json:"errors"`
	FirstError  string    `json:"first_error,omitempty"`
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func main() {
	story := flag.String("story", "", "the Story to start")
	calls := flag.Int("calls", 300, "timed triggers")
	parallel := flag.Int("parallel", 16, "triggers in flight")
	tokens := flag.Bool("tokens", false, "start every story with a delivery token")
	prefix := flag.String("token-prefix", "go", "token and input prefix (unique per run)")
	unthrottled := flag.Bool("unthrottled", false, "lift the client's 20 requests/s limit")
	flag.Parse()
	if *story == "" {
		fmt.Fprintln(os.Stderr, "-story is required")
		os.Exit(2)
	}

	trigger := func(ctx context.Context, story string, inputs map[string]any) error {
		_, err := sdk.StartStory(ctx, story, inputs)
		return err
	}
	if *unthrottled {
		cfg, err := k8s.GetConfig()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cfg.QPS = -1
		client, err := k8s.NewClientForConfig(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		trigger = func(ctx context.Context, story string, inputs map[string]any) error {
			_, err := client.TriggerStory(ctx, story, "", inputs)
			return err
		}
	}
	start := func(i int) error {
		ctx := context.Background()
		id := fmt.Sprintf("%s-%d", *prefix, i)
		if *tokens {
			ctx = sdk.WithTriggerToken(ctx, id)
		}
		return trigger(ctx, *story, map[string]any{"i": i, "id": id})
	}

	if err := start(-1); err != nil {
		fmt.Fprintln(os.Stderr, "warm-up trigger failed:", err)
		os.Exit(1)
	}

	res := result{Calls: *calls, LatenciesMs: make([]float64, *calls)}
	var mu sync.Mutex
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	cpu0 := cpuSeconds()
	t0 := time.Now()
	for i := 0; i < *calls; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			s := time.Now()
			err := start(i)
			res.LatenciesMs[i] = float64(time.Since(s).Microseconds()) / 1000
			if err != nil {
				mu.Lock()
				res.Errors++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	res.Seconds = time.Since(t0).Seconds()
	res.CPUSeconds = cpuSeconds() - cpu0
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(1)
	}
}
