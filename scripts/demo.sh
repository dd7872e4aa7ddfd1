#!/usr/bin/env bash
# make demo: package a generated sample video end to end on real services
# (PostgreSQL, Redis, Azurite, ffmpeg), then verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

demo=.cache/demo
mkdir -p "$demo"
chmod 700 "$demo"

# A demo KEK, kept so that later runs (and verify) can unwrap earlier keys,
# and read from its file (mode 600) as production should: the environment
# then holds only the path (KEY_ENCRYPTION_KEY_FILE).
if [ -z "${KEY_ENCRYPTION_KEY:-}" ] && [ -z "${KEY_ENCRYPTION_KEY_FILE:-}" ]; then
  [ -s "$demo/kek" ] || (umask 077 && openssl rand -base64 32 > "$demo/kek")
  chmod 600 "$demo/kek"
  export KEY_ENCRYPTION_KEY_FILE="$demo/kek"
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

# --- playback gateway: play the encrypted title in a browser -----------------
# A demo token secret, kept like the KEK so that links from earlier runs stay
# valid. Production reads PLAYBACK_TOKEN_SECRETS from a secret store.
if [ -z "${PLAYBACK_TOKEN_SECRETS:-}" ]; then
  [ -s "$demo/playback-secret" ] || (umask 077 && openssl rand -base64 32 > "$demo/playback-secret")
  PLAYBACK_TOKEN_SECRETS="demo:$(cat "$demo/playback-secret")"
  export PLAYBACK_TOKEN_SECRETS
fi
export GATEWAY_ADDR="${GATEWAY_ADDR:-127.0.0.1:8080}"
export GATEWAY_METRICS_ADDR="${GATEWAY_METRICS_ADDR:-127.0.0.1:9465}"
export PLAYER_HLSJS="$PWD/e2e/browser/node_modules/hls.js/dist/hls.min.js"
gateway_url="http://$GATEWAY_ADDR"

# hls.js fetches segments from Azurite with XHR: let the page's origin read them.
./bin/gateway storage-cors --origins "$gateway_url"

# A gateway left running by an earlier demo is replaced.
if [ -s "$demo/gateway.pid" ] && kill -0 "$(cat "$demo/gateway.pid")" 2>/dev/null; then
  kill -TERM "$(cat "$demo/gateway.pid")" 2>/dev/null || true
  sleep 1
fi
echo "==> starting the playback gateway on $gateway_url (log: $demo/gateway.log)"
# Detached, so that the link below keeps working after make returns.
setsid nohup ./bin/gateway </dev/null >"$demo/gateway.log" 2>&1 &
echo $! > "$demo/gateway.pid"
for _ in $(seq 50); do
  curl -fsS "$gateway_url/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$gateway_url/healthz" >/dev/null || { tail -n 20 "$demo/gateway.log"; exit 1; }

watch=$(./bin/gateway token --video "$video" --subject demo-viewer --ttl 12h --print watch --base "$gateway_url")
echo "==> headless Chromium plays it through the gateway (hls.js)"
node e2e/browser/play.mjs "$watch" --seconds 3

echo
echo "Done. The encrypted ladder is in Azurite, container ${STORAGE_URL#azblob://}; the key is"
echo "wrapped in PostgreSQL and reaches a player only through the gateway's gated key endpoint."
echo "  gateway metrics: http://$GATEWAY_METRICS_ADDR/metrics"
echo "  stop the gateway: kill \$(cat $demo/gateway.pid)"
echo
echo "Watch the encrypted title in a browser (link valid 12 hours):"
echo "  $watch"
