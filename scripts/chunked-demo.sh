#!/usr/bin/env bash
# scripts/chunked-demo.sh (make chunked-demo): issue 13's done-when, run as an
# operator would, with the real programs: a 10-minute source with an English
# subtitle sidecar is published through chunks (CHUNK_SECONDS=60) by two
# worker processes, `enqueue verify` checks it, and the playback gateway
# serves it to hls.js and Shaka Player in headless Chromium, played from the
# start and across every chunk seam, each showing the cue that spans it.
#
# It uses its own database, queues and storage directory under
# .cache/chunked-demo. Needs the services of `make services`, ffmpeg and the
# e2e/browser modules (make deps).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
go build -o bin/ ./cmd/...

work="$PWD/.cache/chunked-demo"
rm -rf "$work"
mkdir -p "$work"
chmod 700 "$work"
db="hlsv_chunkdemo_$$"
psql "$TEST_DATABASE_URL" -qc "create database $db"
export DATABASE_URL="${TEST_DATABASE_URL%/*}/$db?sslmode=disable"
export STORAGE_URL="file://$work/storage"
export QUEUE_PREFIX="chunkdemo$$"
(umask 077 && openssl rand -base64 32 >"$work/kek")
export KEY_ENCRYPTION_KEY_FILE="$work/kek"
export CHUNK_SECONDS=60 SEGMENT_SECONDS=4 X264_PRESET=veryfast LADDER="360p:800k:96k,240p:400k:64k"
export GC_INTERVAL=off LOG_LEVEL=info
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	psql "$TEST_DATABASE_URL" -qc "drop database if exists $db with (force)" || true
}
trap cleanup EXIT

seams=(60 120 180 240 300 360 420 480 540)
echo "== a 10-minute 640x360 source, and English subtitles with a cue across each seam"
ffmpeg -hide_banner -nostdin -loglevel error -y \
	-f lavfi -i testsrc2=size=640x360:rate=25:duration=600 -f lavfi -i sine=frequency=440:sample_rate=48000:duration=600 \
	-c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -b:a 64k "$work/lecture.mp4"
srt() { printf '%02d:%02d:%02d,%03d' $(($1 / 3600)) $(($1 / 60 % 60)) $(($1 % 60)) "$2"; }
: >"$work/en.srt"
for i in "${!seams[@]}"; do
	s=${seams[$i]}
	printf '%d\n%s --> %s\nAcross the seam at %d s\n\n' $((i + 1)) "$(srt $((s - 1)) 400)" "$(srt "$s" 600)" "$s" >>"$work/en.srt"
done

./bin/worker migrate
echo "== two worker processes (logs: $work/worker-{1,2}.log)"
for n in 1 2; do
	WORKER_ID="worker-$n" METRICS_ADDR=off ./bin/worker >"$work/worker-$n.log" 2>&1 &
	pids+=($!)
done

echo "== enqueue transcode --video lecture --subtitle en=… --wait"
start=$(date +%s)
./bin/enqueue transcode --video lecture --source "$work/lecture.mp4" --subtitle "en=$work/en.srt" --wait
echo "   published in $(($(date +%s) - start)) s"
for n in 1 2; do
	echo "   worker-$n stored $(grep -c '"msg":"piece stored"' "$work/worker-$n.log") pieces"
done
grep -q '"msg":"fanned out"' "$work"/worker-*.log || { echo "the job was not chunked" >&2; exit 1; }

echo "== enqueue verify --video lecture"
./bin/enqueue verify --video lecture

echo "== the playback gateway, hls.js and Shaka Player in headless Chromium"
(umask 077 && openssl rand -base64 32 >"$work/playback-secret")
export PLAYBACK_TOKEN_SECRETS="demo:$(cat "$work/playback-secret")"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export GATEWAY_ADDR="127.0.0.1:$port" GATEWAY_METRICS_ADDR=off
export PLAYER_HLSJS="$PWD/e2e/browser/node_modules/hls.js/dist/hls.min.js" # the /watch page players are loaded into
./bin/gateway >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fsS "http://$GATEWAY_ADDR/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
master=$(./bin/gateway token --video lecture --subject operator --ttl 1h --print master --base "http://$GATEWAY_ADDR")
node e2e/browser/play.mjs --master "$master" --seconds 3
for s in "${seams[@]}"; do
	echo "   seam at $s s"
	out=$(node e2e/browser/play.mjs --master "$master" --start $((s - 2)) --seconds $((s + 2)) --text en)
	for p in hlsjs shaka; do
		printf '%s\n' "$out" | grep -q "\"$p\":{\"ok\":true" || { printf '%s\n' "$out"; echo "$p did not play across $s s" >&2; exit 1; }
	done
	[ "$(printf '%s\n' "$out" | grep -o "\"text\":\"Across the seam at $s s\"" | wc -l)" = 2 ] ||
		{ printf '%s\n' "$out"; echo "a player did not show the cue across $s s" >&2; exit 1; }
done
echo "ok: published through chunks by two workers, verified, played across every seam by both players"
