// Package testenv connects tests to the real services the project runs on:
// PostgreSQL, Redis, Azurite and ffmpeg. Each helper isolates the test (a
// fresh database, a fresh container, a fresh Redis database index) and fails
// the test when the service is missing: `make test` starts every service, so a
// missing one is a broken environment, never a reason to skip.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Default endpoints, matching what scripts/services.sh starts.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	DefaultRedisAddr   = "127.0.0.1:6379"
	// AzuriteConnString is Azurite's well-known development account. The Go
	// SDK does not accept UseDevelopmentStorage=true, so it is spelled out.
	AzuriteConnString = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
		"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
		"BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Name returns a short random identifier, safe in database, container and
// queue names.
func Name(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func requireTCP(t testing.TB, what, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("testenv: %s is not reachable at %s (run `make services`): %v", what, addr, err)
	}
	c.Close()
}

// DatabaseURL creates an empty database for this test, drops it when the test
// ends, and returns its URL. TEST_DATABASE_URL names the server (any database
// on it the test may connect to).
func DatabaseURL(t testing.TB) string {
	t.Helper()
	admin := env("TEST_DATABASE_URL", DefaultDatabaseURL)
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("testenv: TEST_DATABASE_URL: %v", err)
	}
	requireTCP(t, "PostgreSQL", u.Host)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("testenv: connect PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	name := Name("hlsv_test_")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// RedisAddr returns the address of the Redis server (TEST_REDIS_ADDR).
// Tests isolate themselves with queue names from Name, not by flushing.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := env("TEST_REDIS_ADDR", DefaultRedisAddr)
	requireTCP(t, "Redis", addr)
	return addr
}

// AzuriteConnectionString returns the connection string of the Azurite blob
// service (TEST_AZURE_STORAGE_CONNECTION_STRING overrides it) after checking
// that it answers.
func AzuriteConnectionString(t testing.TB) string {
	t.Helper()
	cs := env("TEST_AZURE_STORAGE_CONNECTION_STRING", AzuriteConnString)
	for _, part := range strings.Split(cs, ";") {
		if v, ok := strings.CutPrefix(part, "BlobEndpoint="); ok {
			u, err := url.Parse(v)
			if err != nil {
				t.Fatalf("testenv: BlobEndpoint: %v", err)
			}
			requireTCP(t, "Azurite", u.Host)
		}
	}
	return cs
}

// FFmpeg returns the paths of ffmpeg and ffprobe, failing the test when
// either is missing.
func FFmpeg(t testing.TB) (ffmpeg, ffprobe string) {
	t.Helper()
	var err error
	if ffmpeg, err = exec.LookPath(env("FFMPEG", "ffmpeg")); err != nil {
		t.Fatalf("testenv: ffmpeg not found (run `make deps`): %v", err)
	}
	if ffprobe, err = exec.LookPath(env("FFPROBE", "ffprobe")); err != nil {
		t.Fatalf("testenv: ffprobe not found (run `make deps`): %v", err)
	}
	return ffmpeg, ffprobe
}

// Source describes a synthetic test video made with ffmpeg's lavfi sources.
type Source struct {
	Width, Height int
	Seconds       float64
	FPS           int
	Audio         bool
	// Extra is inserted before the output name, e.g. a rotation tag
	// ("-metadata:s:v", "rotate=90") or a pixel format.
	Extra []string
	// Ext chooses the container by extension; "mp4" when empty.
	Ext string
	// AudioTracks, when set, replaces Audio with one sine track per entry
	// (440 Hz, 660 Hz, …), each tagged with the entry as its language
	// ("eng", "fra"; "" leaves it untagged); DefaultAudio is the index of
	// the one with the default disposition.
	AudioTracks  []string
	DefaultAudio int
	// Subtitles, when set, is SubRip text muxed in as a mov_text stream
	// tagged language=eng and named "English" (MakeSource's output is then
	// an MP4 whatever Ext says).
	Subtitles string
}

// MakeSource writes a synthetic video into dir and returns its path. It uses
// fast x264 settings so that tests stay quick on two cores.
func MakeSource(t testing.TB, dir string, s Source) string {
	t.Helper()
	ffmpeg, _ := FFmpeg(t)
	if s.FPS == 0 {
		s.FPS = 25
	}
	if s.Ext == "" {
		s.Ext = "mp4"
	}
	out := fmt.Sprintf("%s/src_%dx%d_%gs.%s", dir, s.Width, s.Height, s.Seconds, s.Ext)
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d:duration=%g", s.Width, s.Height, s.FPS, s.Seconds)}
	if s.Audio && len(s.AudioTracks) == 0 {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:sample_rate=48000:duration=%g", s.Seconds))
	}
	for i := range s.AudioTracks {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=48000:duration=%g", 440+220*i, s.Seconds))
	}
	if len(s.AudioTracks) > 0 {
		args = append(args, "-map", "0:v")
		for i, lang := range s.AudioTracks {
			disposition := "0"
			if i == s.DefaultAudio {
				disposition = "default"
			}
			args = append(args, "-map", fmt.Sprintf("%d:a", i+1), fmt.Sprintf("-disposition:a:%d", i), disposition)
			if lang != "" {
				args = append(args, fmt.Sprintf("-metadata:s:a:%d", i), "language="+lang)
			}
		}
		args = append(args, "-c:a", "aac", "-b:a", "64k")
	}
	args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	if s.Audio && len(s.AudioTracks) == 0 {
		args = append(args, "-c:a", "aac", "-b:a", "64k")
	}
	args = append(args, s.Extra...)
	args = append(args, out)
	cmd := exec.Command(ffmpeg, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: make source: %v\n%s", err, b)
	}
	if s.Subtitles != "" {
		return muxSubtitles(t, ffmpeg, out, s.Subtitles)
	}
	return out
}

// muxSubtitles writes plain with srt muxed in as an English mov_text
// stream beside it and returns the new file's path.
func muxSubtitles(t testing.TB, ffmpeg, plain, srt string) string {
	t.Helper()
	dir := filepath.Dir(plain)
	file := filepath.Join(dir, "embedded.srt")
	if err := os.WriteFile(file, []byte(srt), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "subtitled.mp4")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
		"-i", plain, "-i", file, "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text",
		"-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "handler_name=English", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: make subtitled source: %v\n%s", err, b)
	}
	return out
}

// SyncBuffer collects output written from several goroutines (a server's
// logs) while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// KEK returns the tests' key-encryption key, base64 as in
// KEY_ENCRYPTION_KEY: SeededKEK(0). Fixed, so that a failing test's wrapped
// keys can be opened by hand.
func KEK(t testing.TB) string {
	t.Helper()
	return SeededKEK(0)
}

// SeededKEK returns a base64 key-encryption key of bytes seed, seed+9,
// seed+18, … (mod 256): distinct seeds give distinct KEKs, for rotation
// tests, and every one has 32 distinct byte values spread over the whole
// range, as keys.ParseKEK requires of a KEK.
func SeededKEK(seed byte) string {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = seed + byte(i)*9
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// Logger returns a debug-level text logger that writes through t.Log, so
// that output shows with the test that wrote it, and only when it fails or
// runs with -v.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(TestWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestWriter writes each Write as one t.Log line.
type TestWriter struct{ T testing.TB }

// Write implements io.Writer.
func (w TestWriter) Write(p []byte) (int, error) {
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
