#!/usr/bin/env bash
# scripts/backfill-demo.sh: the README's backfill section, run as an operator
# would, with the real programs, on a generated legacy catalogue:
#
#   TS master with 2 renditions, fMP4 with EXT-X-MAP, TS single file
#   (EXT-X-BYTERANGE), a master with an alternate audio group, and two
#   broken titles (a missing segment, a zero-length segment)
#
# It uses its own database, queues and storage directory under
# .cache/backfill-demo, starts a worker in the background, converts the
# catalogue with `enqueue backfill`, verifies every converted title, checks
# that no legacy object changed and that a second start does nothing.
# Needs the services of `make services` and ffmpeg.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
go build -o bin/ ./cmd/...

work="$PWD/.cache/backfill-demo"
rm -rf "$work"
mkdir -p "$work/legacy" "$work/src"
db="hlsv_bfdemo_$$"
psql "$TEST_DATABASE_URL" -qc "create database $db"
export DATABASE_URL="${TEST_DATABASE_URL%/*}/$db?sslmode=disable"
export STORAGE_URL="file://$work/storage"
export QUEUE_PREFIX="bfdemo$$"
export KEY_ENCRYPTION_KEY="$(openssl rand -base64 32)"
export METRICS_ADDR=off GC_INTERVAL=off LOG_LEVEL=warn
worker_pid=
cleanup() {
	[ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null || true
	psql "$TEST_DATABASE_URL" -qc "drop database if exists $db with (force)" || true
}
trap cleanup EXIT

echo "== a legacy catalogue, packaged without encryption"
ff() { ffmpeg -hide_banner -nostdin -loglevel error -y "$@"; }
src="$work/src/src.mp4"
ff -f lavfi -i testsrc2=size=320x240:rate=25:duration=3 -f lavfi -i sine=frequency=440:sample_rate=48000:duration=3 \
	-c:v libx264 -preset ultrafast -pix_fmt yuv420p -g 25 -sc_threshold 0 -c:a aac -b:a 64k "$src"
L="$work/storage/legacy"
hls=(-f hls -hls_time 1 -hls_playlist_type vod)
mkdir -p "$L"/{ts-master,fmp4-single,ts-byterange,audio-group,broken-missing,broken-empty}
ff -i "$src" -filter_complex "[0:v]split=2[a][b];[b]scale=160:120[b2]" -map "[a]" -map 0:a -map "[b2]" -map 0:a \
	-c:v libx264 -preset ultrafast -g 25 -sc_threshold 0 -c:a copy "${hls[@]}" -var_stream_map "v:0,a:0 v:1,a:1" \
	-master_pl_name master.m3u8 -hls_segment_filename "$L/ts-master/%v/seg_%03d.ts" "$L/ts-master/%v/index.m3u8"
ff -i "$src" -c copy "${hls[@]}" -hls_segment_type fmp4 -hls_fmp4_init_filename init.mp4 \
	-hls_segment_filename "$L/fmp4-single/seg_%03d.m4s" "$L/fmp4-single/index.m3u8"
ff -i "$src" -c copy "${hls[@]}" -hls_flags single_file "$L/ts-byterange/index.m3u8"
ff -i "$src" -map 0:v -map 0:a -c copy "${hls[@]}" -var_stream_map "a:0,agroup:aud,language:en,name:audio v:0,agroup:aud,name:video" \
	-master_pl_name master.m3u8 -hls_segment_filename "$L/audio-group/%v/seg_%03d.ts" "$L/audio-group/%v/index.m3u8"
for b in broken-missing broken-empty; do
	ff -i "$src" -c copy "${hls[@]}" -hls_segment_filename "$L/$b/seg_%03d.ts" "$L/$b/index.m3u8"
done
rm "$L/broken-missing/seg_001.ts"
: >"$L/broken-empty/seg_001.ts"
legacy_sums() { (cd "$work/storage" && find legacy -type f -print0 | sort -z | xargs -0 sha256sum); }
legacy_sums >"$work/legacy.before"
find "$L" -name '*.m3u8' | sed "s|$work/storage/||" | sort

echo
echo "== 1. what would be done"
./bin/enqueue backfill start --prefix legacy/ --dry-run

echo
echo "== 2. a worker (handles fresh uploads first, the backfill in the background)"
./bin/worker >"$work/worker.log" 2>&1 &
worker_pid=$!

echo
echo "== 3. start the run"
./bin/enqueue backfill start --prefix legacy/ --batch-size 2 --max-inflight 2 | tee "$work/start.out"
run=$(sed -n 's/^started backfill run \([0-9]*\):.*/\1/p' "$work/start.out")

echo
echo "== 4. follow it (JSON lines when not on a terminal)"
./bin/enqueue backfill status "$run" --watch | jq -c '{state: .run.state, done, failed, skipped, remaining, throughput_mb_s}'
./bin/enqueue backfill status "$run" --json | jq '{state: .run.state, done, failed, remaining, failures}'

echo
echo "== 5. verify every converted title"
for v in $(./bin/enqueue backfill items "$run" --state done); do
	./bin/enqueue verify --video "$v"
done

echo
echo "== 6. no legacy object changed"
legacy_sums >"$work/legacy.after"
diff "$work/legacy.before" "$work/legacy.after" && echo "legacy objects byte-identical ($(wc -l <"$work/legacy.after") objects)"

echo
echo "== 7. the same backfill again does nothing"
./bin/enqueue backfill start --prefix legacy/ --batch-size 2 --max-inflight 2

echo
echo "backfill demo: OK"
