package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	return b, nil
}

// deliverer is the TypeDeliver handler: one signed POST per attempt.
type deliverer struct {
	wh      *standardwebhooks.Webhook
	http    *http.Client
	metrics *Metrics
	now     func() time.Time
}

func newDeliverer(cfg Config, m *Metrics) (*deliverer, error) {
	wh, err := standardwebhooks.NewWebhookRaw(cfg.Secret)
	if err != nil {
		return nil, errors.New("webhooks: signing key rejected")
	}
	return &deliverer{wh: wh, metrics: m, now: time.Now, http: &http.Client{
		Timeout: cfg.RequestTimeout,
		// A redirect is not a delivery: it is retried like any non-2xx,
		// and the signed body never goes to a host nobody configured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// ProcessTask POSTs the event. 2xx is delivered; any other status and any
// network error is retried (Standard Webhooks schedule), then archived.
func (d *deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.EventID == "" || p.URL == "" {
		d.metrics.Deliveries.WithLabelValues(OutcomeFailed).Inc()
		return fmt.Errorf("webhooks: bad payload: %v: %w", err, asynq.SkipRetry)
	}
	err := d.post(ctx, p)
	if err == nil {
		d.metrics.Deliveries.WithLabelValues(OutcomeDelivered).Inc()
		return nil
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	if (ok && retried >= maxRetry) || errors.Is(err, asynq.SkipRetry) {
		d.metrics.Deliveries.WithLabelValues(OutcomeFailed).Inc()
	} else {
		d.metrics.Deliveries.WithLabelValues(OutcomeRetry).Inc()
	}
	return err
}

func (d *deliverer) post(ctx context.Context, p Payload) error {
	body := []byte(p.Body)
	ts := d.now()
	sig, err := d.wh.Sign(p.EventID, ts, body)
	if err != nil {
		return fmt.Errorf("webhooks: sign %s: %w", p.EventID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhooks: deliver %s to %s: %w", p.EventID, Redact(p.URL), asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hlsvault-webhooks")
	req.Header.Set(standardwebhooks.HeaderWebhookID, p.EventID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := d.http.Do(req)
	if err != nil {
		// *url.Error repeats the whole URL, which may carry a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhooks: deliver %s to %s: %w", p.EventID, Redact(p.URL), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhooks: deliver %s to %s: status %s", p.EventID, Redact(p.URL), resp.Status)
	}
	return nil
}
