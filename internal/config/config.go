// Package config holds what the programs share: reading settings from the
// environment with defaults that work locally, and opening the services
// (PostgreSQL, Redis, storage, the keyring) from them.
package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/keys"
)

// Defaults that work on a developer machine after `make services`.
const (
	DefaultRedisURL       = "redis://127.0.0.1:6379/0"
	DefaultDatabaseURL    = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	DefaultKeyURITemplate = "http://127.0.0.1:8080/v1/keys/{key_id}"
)

// DefaultStorageURL is the embedded default: the local filesystem.
func DefaultStorageURL() string {
	return "file://" + filepath.Join(os.TempDir(), "hlsvault", "storage")
}

// Getenv returns getenv(key), or def when that is empty.
func Getenv(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// RedisOpt parses REDIS_URL for asynq.
func RedisOpt(url string) (asynq.RedisConnOpt, error) {
	opt, err := asynq.ParseRedisURI(url)
	if err != nil {
		return nil, fmt.Errorf("config: REDIS_URL: %w", err)
	}
	return opt, nil
}

// Keyring builds the keyring from the primary KEK and a comma-separated list
// of retired ones.
func Keyring(primary, retired string) (*keys.Keyring, error) {
	var old []string
	for _, s := range strings.Split(retired, ",") {
		if s = strings.TrimSpace(s); s != "" {
			old = append(old, s)
		}
	}
	return keys.NewKeyring(primary, old...)
}

// CheckKeyring builds the keyring as Keyring does and, when that fails,
// adds the problem to p without ever showing the values. It returns nil
// then, so a program keeps what validation parsed instead of parsing again.
func CheckKeyring(p *Problems, primary, retired string) *keys.Keyring {
	if p.Failed("KEY_ENCRYPTION_KEY") || p.Failed("KEY_ENCRYPTION_KEYS_RETIRED") {
		return nil // a _FILE that could not be read: already said
	}
	k, err := Keyring(primary, retired)
	if err != nil {
		p.Addf("KEY_ENCRYPTION_KEY / KEY_ENCRYPTION_KEYS_RETIRED (values hidden): %v; want base64 of 32 random bytes (openssl rand -base64 32)", err)
		return nil
	}
	return k
}

// WithValues returns getenv with the given key, value pairs in front of it,
// so that a library reading a variable (storage.Open reads
// AZURE_STORAGE_CONNECTION_STRING) sees the value that was parsed, also
// when it came from a _FILE.
func WithValues(getenv func(string) string, kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string {
		if v, ok := m[k]; ok {
			return v
		}
		return getenv(k)
	}
}

// SlogAsynq adapts a *slog.Logger to asynq.Logger.
type SlogAsynq struct{ L *slog.Logger }

func (a SlogAsynq) log(level slog.Level, args []any) {
	a.L.Log(context.Background(), level, fmt.Sprint(args...), "component", "asynq")
}

// Debug implements asynq.Logger.
func (a SlogAsynq) Debug(args ...any) { a.log(slog.LevelDebug, args) }

// Info implements asynq.Logger.
func (a SlogAsynq) Info(args ...any) { a.log(slog.LevelInfo, args) }

// Warn implements asynq.Logger.
func (a SlogAsynq) Warn(args ...any) { a.log(slog.LevelWarn, args) }

// Error implements asynq.Logger.
func (a SlogAsynq) Error(args ...any) { a.log(slog.LevelError, args) }

// Fatal implements asynq.Logger. asynq calls it only for unrecoverable
// setup errors; it is logged, and the process exits as asynq expects.
func (a SlogAsynq) Fatal(args ...any) {
	a.log(slog.LevelError, args)
	os.Exit(1)
}
