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
// KEY_ENCRYPTION_KEY, SEGMENT_URL_SECRET, GATEWAY_ADMIN_TOKEN, each also as
// NAME_FILE (a file of mode 600), and each refused when weak.
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
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/config"
	"github.com/hlsvault/hlsvault/internal/deletions"
	"github.com/hlsvault/hlsvault/internal/gateway"
	"github.com/hlsvault/hlsvault/internal/ids"
	"github.com/hlsvault/hlsvault/internal/keys"
	"github.com/hlsvault/hlsvault/internal/secretcheck"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/synthetic"
	"github.com/hlsvault/hlsvault/playback"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(config.ExitCode(err)) // 2: bad command line; 1: anything else
	}
}

const usage = `usage:
  gateway [serve] [flags]
  gateway token --video ID --subject S [--ttl 4h] [--session SID] [--print token|master|watch] [--base URL]
  gateway bench-fixture --video ID [--duration 2h] [--segment 4s] [--renditions 1080p,720p,480p,360p] [--segment-bytes N]
  gateway storage-cors --origins https://app.example.com[,…]
  gateway help [command]`

// commands are the gateway's subcommands and what they do.
var commands = map[string]string{
	"serve":         "gateway [serve] [flags]\n  Run the playback gateway (the default command).",
	"token":         "gateway token --video ID --subject S [--ttl 4h] [--session SID] [--print token|master|watch] [--base URL]\n  Mint a playback token (PLAYBACK_TOKEN_SECRETS).",
	"bench-fixture": "gateway bench-fixture --video ID [--duration 2h] [--segment 4s] [--renditions 1080p,720p,480p,360p] [--segment-bytes N]\n  Publish a synthetic title (no ffmpeg).",
	"storage-cors":  "gateway storage-cors --origins https://app.example.com[,…]\n  Let browsers on these origins read segments from Azure Blob.",
}

// DefaultAddr is where the gateway listens by default; config's default
// KEY_URI_TEMPLATE points here.
const DefaultAddr = "127.0.0.1:8080"

// Config is the gateway's configuration, and its tags are the ONE table of
// its settings (README.md is checked against it): environment variable,
// default, the flag that overrides it; secrets from the environment only.
type Config struct {
	Addr               string          `env:"GATEWAY_ADDR" envDefault:"127.0.0.1:8080" flag:"addr" help:"listen address"`
	PublicURL          string          `env:"GATEWAY_PUBLIC_URL" flag:"public-url" help:"URL players use to reach the gateway; empty writes root-relative URIs"`
	MetricsAddr        string          `env:"GATEWAY_METRICS_ADDR" envDefault:"127.0.0.1:9465" flag:"metrics-addr" help:"address of /metrics and /healthz, off disables"`
	RedisURL           string          `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" flag:"redis-url" help:"Redis URL" file:"true"`
	DatabaseURL        string          `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" flag:"database-url" help:"PostgreSQL URL" file:"true"`
	StorageURL         string          `env:"STORAGE_URL,expand" envDefault:"file://$TMPDIR/hlsvault/storage" flag:"storage-url" help:"file:///abs/dir or azblob://container"`
	KeyURITemplate     string          `env:"KEY_URI_TEMPLATE" envDefault:"http://127.0.0.1:8080/v1/keys/{key_id}" flag:"key-uri-template" help:"EXT-X-KEY URI with {key_id} (bench-fixture)"`
	MaxStreams         int             `env:"MAX_STREAMS_PER_SUBJECT" envDefault:"3" flag:"max-streams" help:"concurrent playback sessions per subject"`
	SessionTTL         time.Duration   `env:"SESSION_TTL" envDefault:"2m" flag:"session-ttl" help:"a session without playlist, key or heartbeat requests for this long is released"`
	SegmentURLTTL      time.Duration   `env:"SEGMENT_URL_TTL" envDefault:"10m" flag:"segment-url-ttl" help:"life of a segment URL beyond the time linear playback reaches the segment"`
	SASMaxLifetime     time.Duration   `env:"SAS_MAX_LIFETIME" envDefault:"5m" flag:"sas-max-lifetime" help:"Azure: media a playlist's direct SAS URLs may cover beyond SEGMENT_URL_TTL, and the life of a SAS the gateway redirects to"`
	KeyCacheTTL        time.Duration   `env:"KEY_CACHE_TTL" envDefault:"60s" flag:"key-cache-ttl" help:"how long a cached key or compiled playlist is trusted when a deletion notice is missed"`
	AllowedOrigins     string          `env:"ALLOWED_ORIGINS" flag:"allowed-origins" help:"comma-separated browser origins allowed by CORS, with credentials"`
	TLSCert            string          `env:"GATEWAY_TLS_CERT" flag:"tls-cert" help:"PEM certificate file; with --tls-key, serve HTTPS"`
	TLSKey             string          `env:"GATEWAY_TLS_KEY" flag:"tls-key" help:"PEM private key file"`
	Production         bool            `env:"GATEWAY_PRODUCTION" envDefault:"false" flag:"production" help:"production mode: HTTPS only, HTTPS-only segment URLs; implied by a TLS certificate"`
	MaxTokenLifetime   time.Duration   `env:"MAX_TOKEN_LIFETIME" envDefault:"24h" flag:"max-token-lifetime" help:"longest token TTL the app server mints; a token expiring later than this (+1m skew) is refused, and ended sessions are remembered longer"`
	PlaylistCacheBytes config.ByteSize `env:"PLAYLIST_CACHE_BYTES" envDefault:"64MiB" flag:"playlist-cache-bytes" help:"memory for compiled playlists, e.g. 64MiB"`
	PlayerScript       string          `env:"PLAYER_HLSJS" flag:"player-script" help:"path of hls.min.js; when set, /watch/{video}?token=… serves a player page"`
	RedisPrefix        string          `env:"GATEWAY_REDIS_PREFIX" envDefault:"hlsvault:gw:" flag:"redis-prefix" help:"prefix of the gateway's Redis keys"`
	ShutdownTimeout    time.Duration   `env:"SHUTDOWN_TIMEOUT" envDefault:"20s" flag:"shutdown-timeout" help:"how long a shutdown waits for requests in flight"`
	LogLevel           string          `env:"LOG_LEVEL" envDefault:"info" flag:"log-level" help:"debug, info, warn or error"`

	// From the environment only.
	TokenSecrets      string `env:"PLAYBACK_TOKEN_SECRETS" secret:"true"`
	LegacyTokenSecret string `env:"PLAYBACK_TOKEN_SECRET" secret:"true"`
	LegacyTokenKeyID  string `env:"PLAYBACK_TOKEN_KEY_ID" envDefault:"k1"`
	SegmentSecret     string `env:"SEGMENT_URL_SECRET" secret:"true"`
	KEK               string `env:"KEY_ENCRYPTION_KEY" secret:"true"`
	RetiredKEKs       string `env:"KEY_ENCRYPTION_KEYS_RETIRED" secret:"true"`
	AdminToken        string `env:"GATEWAY_ADMIN_TOKEN" secret:"true"`
	AzureConnection   string `env:"AZURE_STORAGE_CONNECTION_STRING" secret:"true"`

	keyring *keys.Keyring // parsed KEK variables (serve, bench-fixture)
}

func validOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && (u.Path == "" || u.Path == "/") && u.RawQuery == ""
}

// validate checks ranges, forms and the secrets the subcommand cmd needs,
// adding every problem to p.
func (c *Config) validate(cmd string, p *config.Problems) {
	if c.TokenSecrets == "" && c.LegacyTokenSecret != "" {
		c.TokenSecrets = c.LegacyTokenKeyID + ":" + c.LegacyTokenSecret
	}
	p.Check(config.ValidAddr(c.Addr, false), "GATEWAY_ADDR", config.FormListenAddr)
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		p.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", "GATEWAY_PUBLIC_URL", "an absolute http(s) URL such as https://video.example.com, or empty")
	}
	p.Check(config.ValidAddr(c.MetricsAddr, true), "GATEWAY_METRICS_ADDR", config.FormAddr)
	_, err := redis.ParseURL(c.RedisURL)
	p.Check(err == nil, "REDIS_URL", config.FormRedisURL)
	p.Check(config.ValidDatabaseURL(c.DatabaseURL), "DATABASE_URL", config.FormDatabaseURL)
	p.Check(config.ValidStorageURL(c.StorageURL), "STORAGE_URL", config.FormStorageURL)
	p.Check(config.ValidKeyURITemplate(c.KeyURITemplate), "KEY_URI_TEMPLATE", config.FormKeyURI)
	p.Check(c.MaxStreams >= 1 && c.MaxStreams <= 1000, "MAX_STREAMS_PER_SUBJECT", "an integer from 1 to 1000")
	p.Check(c.SessionTTL > 0, "SESSION_TTL", "a positive Go duration such as 2m")
	p.Check(c.SegmentURLTTL > 0, "SEGMENT_URL_TTL", "a positive Go duration such as 10m")
	p.Check(c.SASMaxLifetime >= 10*time.Second, "SAS_MAX_LIFETIME", "a Go duration of at least 10s, such as 5m")
	p.Check(c.KeyCacheTTL > 0 && c.KeyCacheTTL <= time.Hour, "KEY_CACHE_TTL", "a positive Go duration of at most 1h, such as 60s")
	for _, o := range splitList(c.AllowedOrigins) {
		if !validOrigin(o) {
			p.Add("ALLOWED_ORIGINS", "comma-separated exact origins such as https://app.example.com,http://localhost:3000 (no wildcards, no paths)")
			break
		}
	}
	for _, f := range []struct{ key, path string }{{"GATEWAY_TLS_CERT", c.TLSCert}, {"GATEWAY_TLS_KEY", c.TLSKey}, {"PLAYER_HLSJS", c.PlayerScript}} {
		if f.path != "" {
			st, err := os.Stat(f.path)
			p.Check(err == nil && st.Mode().IsRegular(), f.key, "a readable file")
		}
	}
	p.Check(c.LegacyTokenKeyID != "" && !strings.ContainsAny(c.LegacyTokenKeyID, ":, "), "PLAYBACK_TOKEN_KEY_ID", "a key id without ':', ',' or spaces, such as k1")
	if (c.TLSCert == "") != (c.TLSKey == "") {
		p.Addf("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together: give both or neither")
	}
	p.Check(c.MaxTokenLifetime > 0, "MAX_TOKEN_LIFETIME", "a positive Go duration such as 24h")
	p.Check(c.PlaylistCacheBytes > 0, "PLAYLIST_CACHE_BYTES", "a positive byte size such as 64MiB, 500MB or 1048576")
	p.Check(c.RedisPrefix != "", "GATEWAY_REDIS_PREFIX", "a non-empty key prefix such as hlsvault:gw:")
	p.Check(c.ShutdownTimeout > 0, "SHUTDOWN_TIMEOUT", "a positive Go duration such as 20s")
	p.Check(config.ValidLogLevel(c.LogLevel), "LOG_LEVEL", config.FormLogLevel)
	if (cmd == "serve" || cmd == "token") && !p.Failed("PLAYBACK_TOKEN_SECRETS") && !p.Failed("PLAYBACK_TOKEN_SECRET") {
		if _, err := playback.ParseSecrets(c.TokenSecrets); err != nil {
			p.Addf("PLAYBACK_TOKEN_SECRETS (value hidden): %v; want kid:secret,… with each secret at least 32 bytes of at least 10 distinct characters", err)
		}
	}
	if cmd == "serve" {
		// Optional secrets: when given, as strong as the token secrets.
		for _, s := range []struct{ key, value string }{{"GATEWAY_ADMIN_TOKEN", c.AdminToken}, {"SEGMENT_URL_SECRET", c.SegmentSecret}} {
			if s.value == "" || p.Failed(s.key) {
				continue
			}
			if err := secretcheck.Text([]byte(s.value), playback.MinSecretLen); err != nil {
				p.Addf("%s (value hidden) %v", s.key, err)
			}
		}
	}
	if cmd == "serve" || cmd == "bench-fixture" {
		c.keyring = config.CheckKeyring(p, c.KEK, c.RetiredKEKs)
	}
	if cmd == "serve" && (c.Production || c.TLSCert != "") && c.TLSCert == "" && !strings.HasPrefix(c.PublicURL, "https://") {
		p.Addf("production mode serves keys over HTTPS only: give GATEWAY_TLS_CERT and GATEWAY_TLS_KEY, or terminate TLS in front and set an https:// GATEWAY_PUBLIC_URL")
	}
	needAzure := cmd == "storage-cors" || ((cmd == "serve" || cmd == "bench-fixture") && strings.HasPrefix(c.StorageURL, "azblob:"))
	if needAzure {
		p.Check(c.AzureConnection != "", "AZURE_STORAGE_CONNECTION_STRING", "the storage account's connection string")
	}
}

func printUsage(w io.Writer, cmd string, s *config.Settings, fs *flag.FlagSet) {
	if u, ok := commands[cmd]; ok && cmd != "" {
		fmt.Fprintf(w, "usage: %s\n\nflags:\n", u)
	} else {
		fmt.Fprint(w, usage, "\n\nflags (each overrides the environment variable named in its help):\n")
	}
	s.PrintFlags(w, fs)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	explicit := false
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args, explicit = args[0], args[1:], true
	}
	var cfg Config
	s := config.NewSettings(&cfg, getenv)
	fs := config.NewFlagSet("gateway " + cmd)
	var (
		tok       tokenFlags
		fix       fixtureFlags
		originArg string
	)
	switch cmd {
	case "serve":
	case "help":
		s.Register(fs)
		if len(args) > 1 {
			return config.Usagef("help: unexpected argument %q", args[1])
		}
		topic := ""
		if len(args) == 1 {
			if topic = args[0]; commands[topic] == "" {
				return config.Usagef("help: unknown command %q (want serve, token, bench-fixture or storage-cors)", topic)
			}
		}
		printUsage(stdout, topic, s, fs)
		return nil
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
		fs.IntVar(&fix.segmentBytes, "segment-bytes", 0, "store every segment with this many random bytes, encrypted (0: playlists only)")
	case "storage-cors":
		fs.StringVar(&originArg, "origins", "", "comma-separated origins (required)")
	default:
		return config.Usagef("unknown command %q\n%s", cmd, usage)
	}
	s.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			topic := ""
			if explicit {
				topic = cmd
			}
			printUsage(stdout, topic, s, fs)
			return nil
		}
		return config.Usagef("%v (see gateway help %s)", err, cmd)
	}
	if s.VersionRequested() {
		fmt.Fprintln(stdout, config.Version("gateway"))
		return nil
	}
	if fs.NArg() > 0 {
		return config.Usagef("unexpected arguments %q\n%s", fs.Args(), usage)
	}
	p := s.Parse(&cfg)
	cfg.validate(cmd, p)
	if err := p.Err(); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: config.LogLevel(cfg.LogLevel)}))
	switch cmd {
	case "token":
		return mintToken(cfg, tok, stdout)
	case "bench-fixture":
		return benchFixture(ctx, cfg, fix, getenv, log, stdout)
	case "storage-cors":
		if err := gateway.AllowStorageOrigins(ctx, cfg.AzureConnection, splitList(originArg)); err != nil {
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
	tok, err := signer.WithMaxLifetime(cfg.MaxTokenLifetime).Mint(playback.Claims{Video: f.video, Subject: f.subject, Session: f.session, Expires: time.Now().Add(f.ttl)})
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
	segmentBytes      int
}

func benchFixture(ctx context.Context, cfg Config, f fixtureFlags, getenv func(string) string, log *slog.Logger, stdout io.Writer) error {
	if err := ids.ValidateVideoID(f.video); err != nil {
		return fmt.Errorf("bench-fixture: --video: %w", err)
	}
	if f.segmentBytes < 0 || f.segmentBytes > 64<<20 {
		return fmt.Errorf("bench-fixture: --segment-bytes %d: want 0 to 64 MiB", f.segmentBytes)
	}
	keyring := cfg.keyring
	db, err := catalog.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	store, err := storage.Open(ctx, cfg.StorageURL, config.WithValues(getenv, "AZURE_STORAGE_CONNECTION_STRING", cfg.AzureConnection))
	if err != nil {
		return err
	}
	res, err := synthetic.Publish(ctx, db, store, keyring, synthetic.Title{
		Video: f.video, Duration: f.duration, Segment: f.segment, Renditions: splitList(f.renditions),
		KeyURITemplate: cfg.KeyURITemplate, SegmentBytes: f.segmentBytes,
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
	keyring := cfg.keyring
	// (TLS pair and production mode are checked in validate.)
	useTLS := cfg.TLSCert != ""
	production := cfg.Production || useTLS
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
	// The KEKs this gateway holds, for rewrap-keys' check (kek_holders; the
	// gateway's database role needs insert, update and delete on it).
	holder, err := catalog.NewKEKHolder("gateway", keyring.IDs())
	if err != nil {
		return err
	}
	beat, err := db.StartHeartbeat(ctx, holder, catalog.HeartbeatInterval, log)
	if err != nil {
		return err
	}
	defer beat.Stop(ctx)
	store, err := storage.Open(ctx, cfg.StorageURL, config.WithValues(getenv, "AZURE_STORAGE_CONNECTION_STRING", cfg.AzureConnection))
	if err != nil {
		return err
	}
	sessions, err := gateway.NewSessions(rdb, gateway.SessionsConfig{Prefix: cfg.RedisPrefix, Limit: cfg.MaxStreams, TTL: cfg.SessionTTL,
		MaxTokenLifetime: cfg.MaxTokenLifetime})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gw, err := gateway.New(gateway.Config{
		PublicURL: cfg.PublicURL, Tokens: tokens, SegmentSecret: []byte(cfg.SegmentSecret), SegmentURLTTL: cfg.SegmentURLTTL,
		AllowedOrigins: splitList(cfg.AllowedOrigins), Production: production, TLS: useTLS, AdminToken: cfg.AdminToken,
		MaxTokenLifetime: cfg.MaxTokenLifetime, PlaylistCacheBytes: int64(cfg.PlaylistCacheBytes), PlayerScript: cfg.PlayerScript,
		KeyCacheTTL: cfg.KeyCacheTTL, SASMaxLifetime: cfg.SASMaxLifetime,
	}, db, store, keyring, sessions, gateway.NewMetrics(reg), log)
	if err != nil {
		return err
	}
	// Deletion notices from the garbage collector: a destroyed key is
	// dropped from the cache at once.
	var watching sync.WaitGroup
	defer watching.Wait()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watching.Go(func() { gw.WatchDeletions(watchCtx, rdb, deletions.Channel) })
	deps := []dependency{
		{"postgres", db.Ping},
		{"redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           publicHandler(gw, healthHandler(deps, false, log), production),
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
	if cfg.MetricsAddr != "off" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("metrics: listen %s: %w", cfg.MetricsAddr, err)
		}
		mm := http.NewServeMux()
		mm.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mm.Handle("GET /healthz", healthHandler(deps, true, log))
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

// dependency is a backend the gateway cannot serve without.
type dependency struct {
	name string
	ping func(context.Context) error
}

// healthHandler answers /healthz: 200 "ok", or 503 when a dependency does
// not answer within 3 s. The public listener's answer (detailed false) is
// only "unavailable": error texts name database users and internal
// addresses, so they go to the log and, with detailed, to the metrics
// listener's /healthz, one "name: error" line per failing dependency.
func healthHandler(deps []dependency, detailed bool, log *slog.Logger) http.Handler {
	listener := "public"
	if detailed {
		listener = "metrics"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		var problems []string
		for _, d := range deps {
			if err := d.ping(ctx); err != nil {
				problems = append(problems, d.name+": "+err.Error())
			}
		}
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		if len(problems) == 0 {
			fmt.Fprintln(w, "ok")
			return
		}
		log.Warn("health check failed", "listener", listener, "problems", problems)
		w.WriteHeader(http.StatusServiceUnavailable)
		if !detailed {
			fmt.Fprintln(w, "unavailable")
			return
		}
		fmt.Fprintln(w, strings.Join(problems, "\n"))
	})
}

// hsts is the Strict-Transport-Security value of production mode: a year,
// the gateway's subdomains included (a plain-HTTP subdomain could otherwise
// set cookies the gateway reads tokens from). No "preload": that commits
// the whole registrable domain to the browsers' preload list, the domain
// owner's decision, not one service's.
const hsts = "max-age=31536000; includeSubDomains"

// publicHandler is what the public listener serves: the gateway and the
// terse /healthz; in production every response carries HSTS.
func publicHandler(gw, health http.Handler, production bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health)
	mux.Handle("/", gw)
	if !production {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", hsts)
		mux.ServeHTTP(w, r)
	})
}
