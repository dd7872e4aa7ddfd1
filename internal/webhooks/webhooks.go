// Package webhooks delivers the catalog's completion events (the outbox of
// migration 008) to the upload service as Standard Webhooks
// (https://www.standardwebhooks.com): signed HTTP POSTs, at least once.
//
// A Dispatcher in every worker claims undispatched events (pushed by
// LISTEN, with a poll as fallback) and enqueues one asynq task per event
// and URL on its own queue, PREFIX-webhooks, with a task id derived from
// both, so a second dispatch of the same event after a crash is dropped by
// asynq. A separate asynq server in the worker process serves only that
// queue with its own small concurrency: a slow or failing receiver never
// takes a transcoding slot, and a busy transcode queue never starves
// deliveries. Failed deliveries are retried on the Standard Webhooks
// schedule (more than a day), then archived.
package webhooks

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/secretcheck"
	"github.com/hlsvault/hlsvault/jobs"
)

// TypeDeliver is the task that POSTs one event to one URL.
const TypeDeliver = "hls:webhook"

// QueueName is the webhooks queue for a QUEUE_PREFIX: PREFIX-webhooks,
// beside jobs.QueueNames' PREFIX-transcode and PREFIX-background.
func QueueName(prefix string) string {
	if prefix == "" {
		prefix = jobs.DefaultQueuePrefix
	}
	return prefix + "-webhooks"
}

// MaxRetry is how many times a failed delivery is retried: the length of
// the Standard Webhooks schedule (RetryDelay), after which the task is
// archived and counted as failed.
const MaxRetry = 7

// RetryDelay is the Standard Webhooks recommended schedule: after the
// immediate attempt, retries 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h
// after the previous failure (27 h 35 min in all). n is the number of
// retries so far (asynq's count).
func RetryDelay(n int) time.Duration {
	schedule := [MaxRetry]time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute,
		2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	return schedule[min(max(n, 0), MaxRetry-1)]
}

// Secret sizes: Standard Webhooks asks for 24 to 64 random bytes.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
	secretPrefix   = "whsec_"
	// minSecretDistinct: 24 random bytes have fewer than 16 distinct
	// values with probability below 1e-8; a typed word repeated has fewer.
	// (All printable ASCII, also refused: 4.7e-11 for 24 random bytes.)
	minSecretDistinct = 16
)

// FormSecret describes WEBHOOK_SECRET for configuration errors.
const FormSecret = "whsec_ followed by the base64 of 24 to 64 random bytes (e.g. whsec_$(openssl rand -base64 32))"

// ParseSecret decodes a Standard Webhooks secret, whsec_ followed by the
// standard base64 of 24 to 64 random bytes. Errors never contain the value.
func ParseSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, errors.New("webhooks: secret does not start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("webhooks: secret after whsec_ is not standard base64")
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("webhooks: secret is %d bytes, want %d to %d", len(key), MinSecretBytes, MaxSecretBytes)
	}
	printable := true
	for _, c := range key {
		printable = printable && c >= 0x20 && c < 0x7f
	}
	if printable {
		return nil, errors.New("webhooks: secret decodes to printable ASCII only (base64 of a password?): it is not random")
	}
	if d := secretcheck.Distinct(key); d < minSecretDistinct {
		return nil, fmt.Errorf("webhooks: secret has only %d distinct byte values, want at least %d: it is not random", d, minSecretDistinct)
	}
	return key, nil
}

// ParseURLs splits WEBHOOK_URLS: comma-separated absolute http or https
// URLs without fragments, each once. Empty means none. Errors name a URL
// only in its Redact form (a URL may carry a token).
func ParseURLs(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for raw := range strings.SplitSeq(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("webhooks: URL %d does not parse", len(out)+1)
		}
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf("webhooks: URL %s: want http or https", Redact(raw))
		case u.Host == "" || u.Hostname() == "":
			return nil, fmt.Errorf("webhooks: URL %s: no host", Redact(raw))
		case u.Fragment != "" || strings.Contains(raw, "#"):
			return nil, fmt.Errorf("webhooks: URL %s: has a fragment", Redact(raw))
		case seen[u.String()]:
			return nil, fmt.Errorf("webhooks: URL %s is given twice", Redact(raw))
		}
		seen[u.String()] = true
		out = append(out, u.String())
	}
	return out, nil
}

// Redact is a URL as logs and errors show it: scheme, host and path, with
// no user information or query (either may hold a token).
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Body is the webhook body of an event, in the Standard Webhooks shape
// {"type", "timestamp" (RFC 3339, when the event was recorded), "data"}.
// It is built once, at dispatch, so every attempt sends the same bytes.
func Body(e catalog.Event) ([]byte, error) {
	b, err := json.Marshal(struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}{e.Type, e.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), e.Data})
	if err != nil {
		return nil, fmt.Errorf("webhooks: body of %s: %w", e.ID, err)
	}
	return b, nil
}

// Payload is the body of a TypeDeliver task.
type Payload struct {
	// EventID is the webhook-id header: the same on every attempt.
	EventID string `json:"event_id"`
	URL     string `json:"url"`
	// Body is the exact request body (see Body).
	Body string `json:"body"`
}

// TaskID is the deterministic asynq task id of an event's delivery to a
// URL: enqueuing it twice (a dispatch repeated after a crash) conflicts.
func TaskID(eventID, url string) string {
	h := sha256.Sum256([]byte(url))
	return "webhook:" + eventID + ":" + hex.EncodeToString(h[:8])
}
