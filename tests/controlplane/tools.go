//go:build tools

// Package controlplane pins the Kubernetes control-plane binaries used by the
// bubu integration test suite. Build with, e.g.:
//
//	go build -o OUT/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
//	go build -o OUT/etcd ./cmd/etcd
package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
