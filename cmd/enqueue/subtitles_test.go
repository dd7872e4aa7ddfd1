package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/jobs"
)

// TestTranscodeSubtitles: --subtitle uploads a local sidecar under
// uploads/{video}/subs/ named by its content and its sniffed format,
// passes an object name on, and the task's payload carries both; a
// sidecar that is not subtitle text and a bad language are refused
// before anything is enqueued.
func TestTranscodeSubtitles(t *testing.T) {
	env, _ := onlineEnv(t)
	dir := t.TempDir()
	srt := filepath.Join(dir, "movie.fr.txt") // the extension comes from the content
	if err := os.WriteFile(srt, []byte(testenv.SubtitleSRT), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runWith(env, "transcode", "--video", "s1", "--source", "uploads/s1.mp4",
		"--subtitle", "fre="+srt, "--subtitle", "pt-BR=uploads/s1/subs/given.vtt")
	if err != nil || !strings.Contains(out, "enqueued video s1") {
		t.Fatalf("transcode: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`uploaded \S+ to (uploads/s1/subs/[0-9a-f]{32}\.srt)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no upload line:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(strings.TrimPrefix(env["STORAGE_URL"], "file://"), m[1])); err != nil {
		t.Errorf("sidecar not in storage: %v", err)
	}
	redisOpt := asynq.RedisClientOpt{Addr: testenv.RedisAddr(t)}
	ins := asynq.NewInspector(redisOpt)
	defer ins.Close()
	info, err := ins.GetTaskInfo(jobs.QueueNames(env["QUEUE_PREFIX"]).ForPriority(jobs.PriorityNormal), jobs.TaskID("s1", "uploads/s1.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	var p jobs.TranscodePayload
	if err := json.Unmarshal(info.Payload, &p); err != nil {
		t.Fatal(err)
	}
	want := []jobs.Subtitle{{Language: "fre", Source: m[1]}, {Language: "pt-BR", Source: "uploads/s1/subs/given.vtt"}}
	if len(p.Subtitles) != 2 || p.Subtitles[0] != want[0] || p.Subtitles[1] != want[1] {
		t.Errorf("payload subtitles %+v, want %+v", p.Subtitles, want)
	}

	bin := filepath.Join(dir, "not-subs.srt")
	if err := os.WriteFile(bin, []byte("\x00\x00\x00\x18ftypisom"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runWith(env, "transcode", "--video", "s2", "--source", "uploads/s2.mp4", "--subtitle", "en="+bin)
	if err == nil || !strings.Contains(err.Error(), "--subtitle en="+bin) || !strings.Contains(err.Error(), "not UTF-8 text") || strings.Contains(out, "enqueued") {
		t.Errorf("binary sidecar: %v\n%s", err, out)
	}
	if _, err := runWith(env, "transcode", "--video", "s3", "--source", "uploads/s3.mp4", "--subtitle", "english!=x.srt"); err == nil ||
		!strings.Contains(err.Error(), "english!") {
		t.Errorf("bad language: %v", err)
	}
	if _, err := runWith(env, "transcode", "--video", "s3", "--source", "uploads/s3.mp4", "--subtitle", "x.srt"); err == nil ||
		!strings.Contains(err.Error(), "LANG=PATH") {
		t.Errorf("no language: %v", err)
	}
	if _, err := runWith(env, "transcode", "--video", "s3", "--source", "uploads/s3.mp4", "--no-subtitles",
		"--subtitle", "en=uploads/s3/subs/x.srt"); err == nil || !strings.Contains(err.Error(), "subtitles given and dropped") {
		t.Errorf("--no-subtitles with --subtitle: %v", err)
	}
}
