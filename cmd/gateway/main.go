// Command gateway is the playback gateway players talk to: rewritten
// playlists with short-lived segment URLs, a gated key endpoint and a
// concurrent-stream limit per subject (see internal/gateway).
//
//	gateway [serve]                                  run the gateway (default)
//	gateway token --video ID --subject S [--ttl D]   mint a playback token
//	gateway bench-fixture --video ID [--duration D]  publish a synthetic title (no ffmpeg)
//	gateway storage-cors --origins O[,O…]            let browsers on O read segments from Azure Blob
//
// Secrets come from the environment only, never from flags (argv is
// visible to every user of the machine): PLAYBACK_TOKEN_SECRETS,
// KEY_ENCRYPTION_KEY, SEGMENT_URL_SECRET, GATEWAY_ADMIN_TOKEN.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/gateway"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/playback"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  gateway [serve] [flags]
  gateway token --video ID --subject S [--ttl 4h] [--session SID] [--print token|master|watch] [--base URL]
  gateway bench-fixture --video ID [--duration 2h] [--segment 4s] [--renditions 1080p,720p,480p,360p]
  gateway storage-cors --origins https://app.example.com[,…]`

// DefaultAddr is where the gateway listens by default; config's default
// KEY_URI_TEMPLATE points here.
const DefaultAddr = "127.0.0.1:8080"

// Config is the gateway's configuration: flags, defaulting from the
// environment; secrets from the environment only.
type Config struct {
	Addr               string
	PublicURL          string
	MetricsAddr        string
	RedisURL           string
	DatabaseURL        string
	StorageURL         string
	MaxStreams         int
	SessionTTL         time.Duration
	SegmentURLTTL      time.Duration
	AllowedOrigins     string
	TLSCert, TLSKey    string
	Production         bool
	MaxTokenLifetime   time.Duration
	PlaylistCacheBytes int64
	PlayerScript       string
	RedisPrefix        string
	ShutdownTimeout    time.Duration
	LogLevel           string

	// From the environment only.
	TokenSecrets  string
	SegmentSecret string
	KEK           string
	RetiredKEKs   string
	AdminToken    string
}

func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (Config, *flag.FlagSet) {
	var c Config
	env := func(k, def string) string { return config.Getenv(getenv, k, def) }
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", env("GATEWAY_ADDR", DefaultAddr), "listen address (GATEWAY_ADDR)")
	fs.StringVar(&c.PublicURL, "public-url", env("GATEWAY_PUBLIC_URL", ""), "URL players use to reach the gateway; empty writes root-relative URIs (GATEWAY_PUBLIC_URL)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("GATEWAY_METRICS_ADDR", "127.0.0.1:9465"), "address of /metrics and /healthz, off disables (GATEWAY_METRICS_ADDR)")
	fs.StringVar(&c.RedisURL, "redis-url", env("REDIS_URL", config.DefaultRedisURL), "Redis URL (REDIS_URL)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", config.DefaultDatabaseURL), "PostgreSQL URL (DATABASE_URL)")
	fs.StringVar(&c.StorageURL, "storage-url", env("STORAGE_URL", config.DefaultStorageURL()), "file:///dir or azblob://container (STORAGE_URL)")
	ms, _ := strconv.Atoi(env("MAX_STREAMS_PER_SUBJECT", "3"))
	fs.IntVar(&c.MaxStreams, "max-streams", ms, "concurrent playback sessions per subject (MAX_STREAMS_PER_SUBJECT)")
	st, _ := time.ParseDuration(env("SESSION_TTL", "2m"))
	fs.DurationVar(&c.SessionTTL, "session-ttl", st, "a session without playlist, key or heartbeat requests for this long is released (SESSION_TTL)")
	su, _ := time.ParseDuration(env("SEGMENT_URL_TTL", "10m"))
	fs.DurationVar(&c.SegmentURLTTL, "segment-url-ttl", su, "life of a segment URL beyond the time linear playback reaches the segment (SEGMENT_URL_TTL)")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", env("ALLOWED_ORIGINS", ""), "comma-separated browser origins allowed by CORS, with credentials (ALLOWED_ORIGINS)")
	fs.StringVar(&c.TLSCert, "tls-cert", env("GATEWAY_TLS_CERT", ""), "PEM certificate file; with --tls-key, serve HTTPS (GATEWAY_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", env("GATEWAY_TLS_KEY", ""), "PEM private key file (GATEWAY_TLS_KEY)")
	prod, _ := strconv.ParseBool(env("GATEWAY_PRODUCTION", "false"))
	fs.BoolVar(&c.Production, "production", prod, "production mode: HTTPS only, HTTPS-only segment URLs; implied by a TLS certificate (GATEWAY_PRODUCTION)")
	mt, _ := time.ParseDuration(env("MAX_TOKEN_LIFETIME", "24h"))
	fs.DurationVar(&c.MaxTokenLifetime, "max-token-lifetime", mt, "longest token TTL the app server mints; evictions are remembered this long (MAX_TOKEN_LIFETIME)")
	pc, _ := strconv.ParseInt(env("PLAYLIST_CACHE_BYTES", strconv.Itoa(64<<20)), 10, 64)
	fs.Int64Var(&c.PlaylistCacheBytes, "playlist-cache-bytes", pc, "memory for compiled playlists (PLAYLIST_CACHE_BYTES)")
	fs.StringVar(&c.PlayerScript, "player-script", env("PLAYER_HLSJS", ""), "path of hls.min.js; when set, /watch/{video}?token=… serves a player page (PLAYER_HLSJS)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", env("GATEWAY_REDIS_PREFIX", "hlsvault:gw:"), "prefix of the gateway's Redis keys (GATEWAY_REDIS_PREFIX)")
	sd, _ := time.ParseDuration(env("SHUTDOWN_TIMEOUT", "20s"))
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", sd, "how long a shutdown waits for requests in flight (SHUTDOWN_TIMEOUT)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	c.TokenSecrets = getenv("PLAYBACK_TOKEN_SECRETS")
	if c.TokenSecrets == "" && getenv("PLAYBACK_TOKEN_SECRET") != "" {
		c.TokenSecrets = env("PLAYBACK_TOKEN_KEY_ID", "k1") + ":" + getenv("PLAYBACK_TOKEN_SECRET")
	}
	c.SegmentSecret = getenv("SEGMENT_URL_SECRET")
	c.KEK = getenv("KEY_ENCRYPTION_KEY")
	c.RetiredKEKs = getenv("KEY_ENCRYPTION_KEYS_RETIRED")
	c.AdminToken = getenv("GATEWAY_ADMIN_TOKEN")
	return c, fs
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	cfg, fs := parseConfig("gateway "+cmd, args, getenv, stderr)
	var (
		tok       tokenFlags
		fix       fixtureFlags
		originArg string
	)
	switch cmd {
	case "serve":
	case "token":
		fs.StringVar(&tok.video, "video", "", "video id (required)")
		fs.StringVar(&tok.subject, "subject", "", "subject: the account that plays (required)")
		fs.DurationVar(&tok.ttl, "ttl", 4*time.Hour, "token lifetime")
		fs.StringVar(&tok.session, "session", "", "session id (default: a new random one)")
		fs.StringVar(&tok.print, "print", "token", "what to print: token, master (its URL) or watch (the player page URL)")
		fs.StringVar(&tok.base, "base", "", "gateway URL for --print master|watch (default GATEWAY_PUBLIC_URL, else http://GATEWAY_ADDR)")
	case "bench-fixture":
		fs.StringVar(&fix.video, "video", "", "video id (required)")
		fs.DurationVar(&fix.duration, "duration", 2*time.Hour, "title duration")
		fs.DurationVar(&fix.segment, "segment", 4*time.Second, "segment duration")
		fs.StringVar(&fix.renditions, "renditions", "1080p,720p,480p,360p", "rendition names")
	case "storage-cors":
		fs.StringVar(&originArg, "origins", "", "comma-separated origins (required)")
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q\n%s", fs.Args(), usage)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	switch cmd {
	case "token":
		return mintToken(cfg, tok, stdout)
	case "bench-fixture":
		return benchFixture(ctx, cfg, fix, getenv, log, stdout)
	case "storage-cors":
		if err := gateway.AllowStorageOrigins(ctx, getenv("AZURE_STORAGE_CONNECTION_STRING"), splitList(originArg)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "storage CORS allows %s\n", originArg)
		return nil
	}
	return serve(ctx, cfg, getenv, log)
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type tokenFlags struct {
	video, subject, session, print, base string
	ttl                                  time.Duration
}

func mintToken(cfg Config, f tokenFlags, stdout io.Writer) error {
	signer, err := playback.ParseSecrets(cfg.TokenSecrets)
	if err != nil {
		return err
	}
	if f.video == "" || f.subject == "" {
		return errors.New("token: --video and --subject are required")
	}
	if f.ttl <= 0 || f.ttl > cfg.MaxTokenLifetime {
		return fmt.Errorf("token: --ttl must be positive and at most MAX_TOKEN_LIFETIME (%v)", cfg.MaxTokenLifetime)
	}
	if f.session == "" {
		f.session = playback.NewSessionID()
	}
	tok, err := signer.Mint(playback.Claims{Video: f.video, Subject: f.subject, Session: f.session, Expires: time.Now().Add(f.ttl)})
	if err != nil {
		return err
	}
	base := f.base
	if base == "" {
		base = cfg.PublicURL
	}
	if base == "" {
		scheme := "http"
		if cfg.TLSCert != "" {
			scheme = "https"
		}
		base = scheme + "://" + cfg.Addr
	}
	base = strings.TrimRight(base, "/")
	switch f.print {
	case "token":
		fmt.Fprintln(stdout, tok)
	case "master":
		fmt.Fprintln(stdout, playback.MasterURL(base, f.video, tok))
	case "watch":
		fmt.Fprintf(stdout, "%s/watch/%s?%s=%s\n", base, f.video, playback.TokenParam, tok)
	default:
		return fmt.Errorf("token: --print %q: want token, master or watch", f.print)
	}
	return nil
}

type fixtureFlags struct {
	video, renditions string
	duration, segment time.Duration
}

func benchFixture(ctx context.Context, cfg Config, f fixtureFlags, getenv func(string) string, log *slog.Logger, stdout io.Writer) error {
	if err := ids.ValidateVideoID(f.video); err != nil {
		return fmt.Errorf("bench-fixture: --video: %w", err)
	}
	keyring, err := config.Keyring(cfg.KEK, cfg.RetiredKEKs)
	if err != nil {
		return err
	}
	db, err := catalog.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	store, err := storage.Open(ctx, cfg.StorageURL, getenv)
	if err != nil {
		return err
	}
	res, err := gateway.PublishSynthetic(ctx, db, store, keyring, gateway.Fixture{
		Video: f.video, Duration: f.duration, Segment: f.segment, Renditions: splitList(f.renditions),
		KeyURITemplate: config.Getenv(getenv, "KEY_URI_TEMPLATE", config.DefaultKeyURITemplate),
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"video": res.Video, "version": res.Version, "key_id": res.KeyID, "renditions": res.Renditions, "segments": res.Segments,
	})
}

func serve(ctx context.Context, cfg Config, getenv func(string) string, log *slog.Logger) error {
	// Refuse to start without secrets before touching anything else.
	tokens, err := playback.ParseSecrets(cfg.TokenSecrets)
	if err != nil {
		return err
	}
	keyring, err := config.Keyring(cfg.KEK, cfg.RetiredKEKs)
	if err != nil {
		return err
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together")
	}
	useTLS := cfg.TLSCert != ""
	production := cfg.Production || useTLS
	if production && !useTLS && !strings.HasPrefix(cfg.PublicURL, "https://") {
		return errors.New("production mode serves keys over HTTPS only: give GATEWAY_TLS_CERT and GATEWAY_TLS_KEY, or terminate TLS in front and set an https:// GATEWAY_PUBLIC_URL")
	}
	ropt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(ropt)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	db, err := catalog.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := storage.Open(ctx, cfg.StorageURL, getenv)
	if err != nil {
		return err
	}
	sessions, err := gateway.NewSessions(rdb, gateway.SessionsConfig{Prefix: cfg.RedisPrefix, Limit: cfg.MaxStreams, TTL: cfg.SessionTTL})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gw, err := gateway.New(gateway.Config{
		PublicURL: cfg.PublicURL, Tokens: tokens, SegmentSecret: []byte(cfg.SegmentSecret), SegmentURLTTL: cfg.SegmentURLTTL,
		AllowedOrigins: splitList(cfg.AllowedOrigins), Production: production, TLS: useTLS, AdminToken: cfg.AdminToken,
		MaxTokenLifetime: cfg.MaxTokenLifetime, PlaylistCacheBytes: cfg.PlaylistCacheBytes, PlayerScript: cfg.PlayerScript,
	}, db, store, keyring, sessions, gateway.NewMetrics(reg), log)
	if err != nil {
		return err
	}
	health := func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		var problems []string
		if err := db.Ping(ctx); err != nil {
			problems = append(problems, "postgres: "+err.Error())
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			problems = append(problems, "redis: "+err.Error())
		}
		w.Header().Set("Cache-Control", "no-store")
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(problems, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", health)
	mux.Handle("/", gw)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // a large segment over a slow link
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	scheme := "http"
	if useTLS {
		scheme = "https"
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	errc := make(chan error, 2)
	go func() {
		var err error
		if useTLS {
			err = srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	var msrv *http.Server
	if cfg.MetricsAddr != "" && cfg.MetricsAddr != "off" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("metrics: listen %s: %w", cfg.MetricsAddr, err)
		}
		mm := http.NewServeMux()
		mm.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mm.HandleFunc("GET /healthz", health)
		msrv = &http.Server{Handler: mm, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := msrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	log.Info("gateway listening", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String(),
		"storage", store.String(), "production", production, "max_streams", cfg.MaxStreams,
		"session_ttl", cfg.SessionTTL.String(), "segment_url_ttl", cfg.SegmentURLTTL.String(), "player", cfg.PlayerScript != "")

	select {
	case <-ctx.Done():
	case err := <-errc:
		_ = srv.Close()
		return err
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if msrv != nil {
		_ = msrv.Shutdown(sctx)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
