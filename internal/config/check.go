package config

import (
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hlsvault/hlsvault/internal/storage"
)

// Accepted forms, for error messages.
const (
	FormAddr        = "host:port (port 0-65535), or off"
	FormListenAddr  = "host:port (port 0-65535)"
	FormLogLevel    = "debug, info, warn or error"
	FormRedisURL    = "redis://[:password@]host:port[/db] (or rediss://)"
	FormDatabaseURL = "a PostgreSQL URL such as postgres://user@host:5432/db?sslmode=disable"
	FormStorageURL  = "file:///absolute/dir or azblob://container"
	FormKeyURI      = "a URI containing {key_id}: an absolute http(s) URL or a path starting with /"
	FormPreset      = "an x264 preset: " + "ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow or placebo"
)

// X264Presets are the x264 presets, fastest first.
var X264Presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"}

// ValidAddr reports whether s is host:port with a numeric port (or, with
// allowOff, the word off).
func ValidAddr(s string, allowOff bool) bool {
	if allowOff && s == "off" {
		return true
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// ValidLogLevel reports whether s is a slog level name.
func ValidLogLevel(s string) bool {
	var l slog.Level
	return l.UnmarshalText([]byte(s)) == nil
}

// LogLevel parses a level checked by ValidLogLevel.
func LogLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}

// ValidRedisURL parses s as asynq does, without connecting.
func ValidRedisURL(s string) bool {
	_, err := asynq.ParseRedisURI(s)
	return err == nil
}

// ValidDatabaseURL parses s as pgx does, without connecting.
func ValidDatabaseURL(s string) bool {
	_, err := pgxpool.ParseConfig(s)
	return err == nil && s != ""
}

// ValidStorageURL checks the form of a storage URL, without opening it.
func ValidStorageURL(s string) bool {
	_, err := storage.ParseURL(s)
	return err == nil
}

// ValidKeyURITemplate reports whether s contains {key_id} and is an
// absolute http(s) URL or a path starting with /.
func ValidKeyURITemplate(s string) bool {
	if !strings.Contains(s, "{key_id}") {
		return false
	}
	if strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") {
		return true
	}
	u, err := url.Parse(strings.ReplaceAll(s, "{key_id}", "k"))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// ValidPreset reports whether s is an x264 preset.
func ValidPreset(s string) bool { return slices.Contains(X264Presets, s) }

var (
	dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)
	urlPassword = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:)[^@]*@`)
)

// RedactURL masks the password of a URL (postgres://u:xxxxx@host/…) or of
// a key=value connection string. Other strings are returned unchanged.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.User != nil {
		if _, has := u.User.Password(); has {
			return u.Redacted()
		}
		return s
	}
	// Also when the URL does not parse (a bad port, say): the error message
	// repeats the value.
	s = urlPassword.ReplaceAllString(s, "${1}xxxxx@")
	return dsnPassword.ReplaceAllString(s, "${1}xxxxx")
}
