// Command etcd runs a single-member embedded etcd server for the bubu
// integration-test control plane. It only supports the flags the test
// fixture needs and exits when it receives SIGINT/SIGTERM.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func mustURLs(s string) []url.URL {
	u, err := url.Parse(s)
	if err != nil {
		log.Fatalf("invalid URL %q: %v", s, err)
	}
	return []url.URL{*u}
}

func main() {
	dataDir := flag.String("data-dir", "", "data directory (required)")
	client := flag.String("listen-client-urls", "http://127.0.0.1:2379", "client URL")
	peer := flag.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL")
	logLevel := flag.String("log-level", "warn", "log level")
	quota := flag.Int64("quota-backend-bytes", 0, "backend quota in bytes (0 = default)")
	unsafeNoFsync := flag.Bool("unsafe-no-fsync", true, "skip fsync (test only)")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("--data-dir is required")
	}

	cfg := embed.NewConfig()
	cfg.Name = "bubu-test"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = mustURLs(*client)
	cfg.AdvertiseClientUrls = mustURLs(*client)
	cfg.ListenPeerUrls = mustURLs(*peer)
	cfg.AdvertisePeerUrls = mustURLs(*peer)
	cfg.InitialCluster = cfg.Name + "=" + *peer
	cfg.LogLevel = *logLevel
	cfg.UnsafeNoFsync = *unsafeNoFsync
	if *quota > 0 {
		cfg.QuotaBackendBytes = *quota
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("start etcd: %v", err)
	}
	defer e.Close()

	select {
	case <-e.Server.ReadyNotify():
		log.Printf("etcd ready on %s", *client)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		log.Fatal("etcd took too long to start")
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Printf("received %v, stopping etcd", s)
	case err := <-e.Err():
		log.Fatalf("etcd error: %v", err)
	}
}
