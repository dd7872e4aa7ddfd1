package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/testenv"
)

// TestUploadServiceAcceptance is issue 11's "done when", as the upload
// service's engineer meets it: a program in another module
// (testdata/uploadsvc, built with its own go.mod and go.sum) enqueues a
// video through the public client, is woken when it is published and reads
// its status, without a line of SQL of its own; meanwhile the worker, as
// deployed, pushes video.published as a Standard Webhook that the
// JavaScript reference verifier (npm standardwebhooks, nobody here wrote
// it) accepts, carrying the caller's metadata.
func TestUploadServiceAcceptance(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (run `make deps`): %v", err)
	}
	verifier, err := filepath.Abs(filepath.Join("..", "..", "e2e", "webhooks", "verify.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(verifier), "node_modules", "standardwebhooks", "package.json")); err != nil {
		t.Fatalf("standardwebhooks missing (run `make deps`): %v", err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)

	type request struct {
		headers map[string]string
		body    []byte
	}
	received := make(chan request, 20)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received <- request{map[string]string{
			"webhook-id": r.Header.Get("webhook-id"), "webhook-timestamp": r.Header.Get("webhook-timestamp"),
			"webhook-signature": r.Header.Get("webhook-signature"), "content-type": r.Header.Get("Content-Type"),
		}, body}
	}))
	defer hook.Close()

	env := envMap(testEnv(t))
	env["WEBHOOK_URLS"] = hook.URL + "/hooks/hlsvault"
	env["WEBHOOK_SECRET"] = secret
	ctx, cancel := context.WithCancel(context.Background())
	var logs testenv.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env.get, io.Discard, &logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()

	// The creator's upload, already stored where the worker reads sources.
	video := testenv.Name("upl")
	source := "uploads/" + video + ".mp4"
	store, err := storage.Open(context.Background(), env["STORAGE_URL"], nil)
	if err != nil {
		t.Fatal(err)
	}
	src := testenv.MakeSource(t, t.TempDir(), testenv.Source{Width: 320, Height: 240, Seconds: 2, Audio: true})
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	err = store.Put(context.Background(), source, f, st.Size(), storage.PutOptions{ContentType: "video/mp4"})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "uploadsvc")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "..", "testdata", "uploadsvc")
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the upload service's module: %v\n%s", err, out)
	}
	metadata := `{"upload_id":"u-1138","creator":"c-7"}`
	svc := exec.Command(bin, video, source, metadata)
	svc.Env = []string{"DATABASE_URL=" + env["DATABASE_URL"], "REDIS_URL=" + env["REDIS_URL"], "QUEUE_PREFIX=" + env["QUEUE_PREFIX"],
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var out bytes.Buffer
	svc.Stdout, svc.Stderr = &out, &out
	if err := svc.Run(); err != nil {
		t.Fatalf("uploadsvc: %v\n%s\nworker log:\n%s", err, out.String(), logs.String())
	}
	t.Logf("uploadsvc printed:\n%s", out.String())
	if !strings.Contains(out.String(), "state=published version=1 master=hls/"+video+"/v1/master.m3u8") {
		t.Errorf("uploadsvc did not see the video published:\n%s", out.String())
	}

	deadline := time.After(30 * time.Second)
	for {
		var r request
		select {
		case r = <-received:
		case <-deadline:
			t.Fatalf("no video.published webhook\nworker log:\n%s", logs.String())
		}
		var ev struct {
			Type string `json:"type"`
			Data struct {
				VideoID  string          `json:"video_id"`
				Version  int             `json:"version"`
				Metadata json.RawMessage `json:"metadata"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.body, &ev); err != nil {
			t.Fatalf("webhook body %q: %v", r.body, err)
		}
		if ev.Type != "video.published" {
			continue // progress events may come first
		}
		t.Logf("delivered: POST /hooks/hlsvault\nwebhook-id: %s\nwebhook-timestamp: %s\nwebhook-signature: %s\n\n%s",
			r.headers["webhook-id"], r.headers["webhook-timestamp"], r.headers["webhook-signature"], r.body)
		if ev.Data.VideoID != video || ev.Data.Version != 1 || !strings.HasPrefix(r.headers["webhook-id"], "msg_") {
			t.Errorf("video.published: %s %+v", r.headers["webhook-id"], ev.Data)
		}
		var md map[string]string
		if err := json.Unmarshal(ev.Data.Metadata, &md); err != nil || md["upload_id"] != "u-1138" || md["creator"] != "c-7" {
			t.Errorf("metadata %s, want the enqueued object", ev.Data.Metadata)
		}
		// The off-the-shelf verifier accepts it, and refuses it with one
		// byte of the body changed.
		for _, tc := range []struct {
			body string
			ok   bool
		}{{string(r.body), true}, {strings.Replace(string(r.body), "u-1138", "u-1139", 1), false}} {
			in, _ := json.Marshal(map[string]any{"secret": secret, "headers": r.headers, "body": tc.body})
			cmd := exec.Command(node, verifier)
			cmd.Stdin = bytes.NewReader(in)
			vout, err := cmd.CombinedOutput()
			if (err == nil) != tc.ok {
				t.Errorf("standardwebhooks (npm) verify, want ok=%v: %v\n%s", tc.ok, err, vout)
			}
		}
		return
	}
}
