#!/usr/bin/env bash
# make demo: package a generated sample video end to end on real services
# (PostgreSQL, Redis, Azurite, ffmpeg), then verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

demo=.cache/demo
mkdir -p "$demo"
chmod 700 "$demo"

# A demo KEK, kept so that later runs (and verify) can unwrap earlier keys.
# Production reads KEY_ENCRYPTION_KEY from a secret store.
if [ -z "${KEY_ENCRYPTION_KEY:-}" ]; then
  [ -s "$demo/kek" ] || (umask 077 && openssl rand -base64 32 > "$demo/kek")
  KEY_ENCRYPTION_KEY=$(cat "$demo/kek")
  export KEY_ENCRYPTION_KEY
fi
export STORAGE_URL="${STORAGE_URL:-azblob://hlsvault-demo}"
export METRICS_ADDR="${METRICS_ADDR:-127.0.0.1:9464}"

sample="$demo/sample.mp4"
if [ ! -s "$sample" ]; then
  echo "==> generating a 12-second 1280x720 sample with ffmpeg"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=12" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=12" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -b:a 128k "$sample"
fi

echo "==> starting a worker (log: $demo/worker.log)"
./bin/worker >"$demo/worker.log" 2>&1 &
worker=$!
stop_worker() {
  kill -TERM "$worker" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
}
trap stop_worker EXIT

video="demo-$(date +%Y%m%d-%H%M%S)"
echo "==> enqueue transcode --video $video --source $sample --wait"
./bin/enqueue transcode --video "$video" --source "$sample" --wait

echo "==> enqueue status --video $video"
./bin/enqueue status --video "$video"

echo "==> enqueue verify --video $video"
./bin/enqueue verify --video "$video"

master=$(./bin/enqueue status --video "$video" | sed -n 's/.*"master": "\(.*\)".*/\1/p')
echo
echo "Done. The encrypted ladder is in Azurite, container ${STORAGE_URL#azblob://}:"
echo "  master playlist: $master"
echo "  blob URL:        http://127.0.0.1:10000/devstoreaccount1/${STORAGE_URL#azblob://}/$master"
echo "  key:             wrapped in PostgreSQL (content_keys), never in storage"
echo "  worker metrics:  http://$METRICS_ADDR/metrics (while a worker runs)"
