package main

import (
	"context"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/webhooks"
)

// webhookSettings is the parsed WEBHOOK_* configuration.
type webhookSettings struct {
	urls   []string
	secret []byte
}

// validateWebhooks checks WEBHOOK_URLS, WEBHOOK_SECRET and
// WEBHOOK_CONCURRENCY. A secret is refused when malformed even without
// URLs (it would be found out only when URLs are added); URLs need one.
func (c *Config) validateWebhooks(p *config.Problems) {
	var err error
	if c.webhooks.urls, err = webhooks.ParseURLs(c.WebhookURLs); err != nil {
		p.Add("WEBHOOK_URLS", "comma-separated http:// or https:// URLs, each once, without #fragments ("+err.Error()+")")
	}
	switch {
	case c.WebhookSecret != "":
		if c.webhooks.secret, err = webhooks.ParseSecret(c.WebhookSecret); err != nil {
			p.Add("WEBHOOK_SECRET", webhooks.FormSecret+" ("+err.Error()+")")
		}
	case len(c.webhooks.urls) > 0:
		p.Add("WEBHOOK_SECRET", webhooks.FormSecret+": required when WEBHOOK_URLS is set")
	}
	p.Check(c.WebhookConcurrency >= 1 && c.WebhookConcurrency <= 64, "WEBHOOK_CONCURRENCY", "an integer from 1 to 64")
}

// startWebhooks starts the completion-event dispatcher and, with
// WEBHOOK_URLS, the delivery server: a second asynq server in this process
// that serves only PREFIX-webhooks, so that no delivery ever takes a
// transcode slot and no transcode delays a delivery. It shuts down when ctx
// ends, alongside the transcode server; stop waits for that (and shuts down
// itself if run returns first).
func startWebhooks(ctx context.Context, cfg Config, db *catalog.DB, redisOpt asynq.RedisConnOpt, reg prometheus.Registerer,
	log *slog.Logger) (stop func(), err error) {
	svc, err := webhooks.New(webhooks.Config{
		Queue: webhooks.QueueName(cfg.QueuePrefix), URLs: cfg.webhooks.urls, Secret: cfg.webhooks.secret,
		Concurrency: cfg.WebhookConcurrency,
	}, db, redisOpt, webhooks.NewMetrics(reg), log)
	if err != nil {
		return nil, err
	}
	if err := svc.Start(ctx); err != nil {
		return nil, err
	}
	go func() {
		<-ctx.Done()
		svc.Shutdown()
	}()
	return svc.Shutdown, nil
}
