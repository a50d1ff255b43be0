// Package deploy holds inkan's deployment files: the systemd unit, Docker
// Compose and Kubernetes manifests, the Grafana dashboard, the Postfix
// smarthost snippet and the guides. It has no code; its tests (run by
// `go test ./...`) check that those files agree with the binary: every
// INKAN_* variable names a real setting, the configurations they build load
// and validate, probes and ports match the listeners, mounted secrets cover
// every file the configuration names, the Docker build context holds what
// the build reads, and the dashboard queries only documented metrics.
package deploy
