package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// opsMetricsServed checks that the worker serves the operator's metrics
// (internal/opsmetrics) for its queues: every job of the test has ended,
// so nothing is pending or in flight.
func opsMetricsServed(t *testing.T, addr, prefix string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`hlsvault_queue_tasks{queue="` + prefix + `-transcode",state="pending"} 0`,
		`hlsvault_queue_tasks{queue="` + prefix + `-background",state="archived"} 0`,
		`hlsvault_inflight_tasks{queue="` + prefix + `-transcode"} 0`,
		`hlsvault_queue_tasks{queue="` + prefix + `-transcode-high",state="pending"} 0`,
		`hlsvault_queue_tasks{queue="` + prefix + `-transcode-low",state="pending"} 0`,
		`hlsvault_queue_tasks{queue="` + prefix + `-webhooks",state="retry"} 0`,
		`hlsvault_metrics_scrape_errors_total{source="redis"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics: want %q in:\n%.3000s", want, body)
		}
	}
}
