#!/usr/bin/env bash
# scripts/gateway-bench.sh: requests per second and p99 latency of the
# playback gateway on loopback, measured with wrk (Debian package `wrk`):
#
#   - the key endpoint, GET /v1/keys/{key_id}?token=… (a live session)
#   - a segment through the gateway, GET /v1/segments/…?exp=…&sig=…[&s=…]
#     (the filesystem backend: signature, session check, file read)
#   - a rendition playlist of a 2-hour title (1800 segments, every URI
#     rewritten per request), GET /v1/videos/{video}/720p/index.m3u8?v=1&token=…
#
# each at WRK_LOW_CONNECTIONS (8) and WRK_CONNECTIONS (64) connections.
#
# With GATEWAY_BENCH_BASELINE=<git revision> (make bench sets it to the
# merge base with main when it differs from HEAD), a second gateway is built
# from that revision in a temporary git worktree (removed afterwards), both
# serve the same fixture side by side, every run is made on the baseline and
# then on this tree, and the script prints the ratios new/old (throughput:
# target >= 0.9; p99: lower is better, target <= 1.11).
#
# The titles are synthetic (`gateway bench-fixture`: playlists, a wrapped key
# and a published version, no ffmpeg; the segment title also stores its
# segments, GATEWAY_BENCH_SEGMENT_BYTES each), in their own database
# (hlsvault_gateway_bench) and a throwaway filesystem store. One token per
# title, so one playback session, as a player that seeks and switches
# bitrate. The gateway logs every key delivery, as in production (to a file).
#
# wrk keeps every connection busy, so with -c64 on a saturated 2-core
# machine p99 is mostly queueing (64 requests in flight / throughput).
#
# Environment: WRK_THREADS [2], WRK_CONNECTIONS [64], WRK_LOW_CONNECTIONS [8],
# WRK_DURATION [10s], GATEWAY_BENCH_ADDR [127.0.0.1:18080] (the baseline
# listens on the next port), GATEWAY_BENCH_SEGMENT_BYTES [65536],
# GATEWAY_BENCH_BASELINE [none].
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

command -v wrk >/dev/null || { echo "gateway-bench: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v psql >/dev/null || { echo "gateway-bench: psql not found (make deps)" >&2; exit 1; }

THREADS="${WRK_THREADS:-2}"
CONNS="${WRK_CONNECTIONS:-64}"
LOW_CONNS="${WRK_LOW_CONNECTIONS:-8}"
DURATION="${WRK_DURATION:-10s}"
ADDR="${GATEWAY_BENCH_ADDR:-127.0.0.1:18080}"
SEG_BYTES="${GATEWAY_BENCH_SEGMENT_BYTES:-65536}"
BASELINE="${GATEWAY_BENCH_BASELINE:-}"
work="$PWD/.cache/gateway-bench"
rm -rf "$work"
mkdir -p "$work/storage" "$work/bin"
chmod 700 "$work"

go build -o "$work/bin/gateway" ./cmd/gateway
gateways=(new)
declare -A bin=([new]="$work/bin/gateway") addr=([new]="$ADDR")
old_tree=""
cleanup_tree() {
	if [ -n "$old_tree" ]; then git worktree remove --force "$old_tree" >/dev/null 2>&1 || true; fi
}
trap cleanup_tree EXIT
if [ -n "$BASELINE" ]; then
	rev="$(git rev-parse --verify "$BASELINE^{commit}")"
	old_tree="$(mktemp -d /tmp/gateway-bench-old.XXXXXX)"
	rmdir "$old_tree"
	git worktree add --detach "$old_tree" "$rev" >/dev/null 2>&1
	(cd "$old_tree" && go build -o "$work/bin/gateway-old" ./cmd/gateway)
	cleanup_tree
	old_tree=""
	gateways=(old new)
	bin[old]="$work/bin/gateway-old"
	addr[old]="${ADDR%:*}:$((${ADDR##*:} + 1))"
fi

# A database of its own, so the synthetic titles never show up elsewhere.
db=hlsvault_gateway_bench
admin_url="$DATABASE_URL"
psql "$admin_url" -XAtqc "select 1 from pg_database where datname = '$db'" | grep -q 1 ||
	psql "$admin_url" -XAtqc "create database $db" >/dev/null
DATABASE_URL="$(printf '%s' "$admin_url" | sed -E "s#^(postgres(ql)?://[^/]+/)[^?]*#\1$db#")"

KEY_ENCRYPTION_KEY="$(openssl rand -base64 32)"
PLAYBACK_TOKEN_SECRETS="bench:$(openssl rand -base64 32)"
STORAGE_URL="file://$work/storage"
GATEWAY_METRICS_ADDR=off
export DATABASE_URL KEY_ENCRYPTION_KEY PLAYBACK_TOKEN_SECRETS STORAGE_URL GATEWAY_METRICS_ADDR

g="$work/bin/gateway"
video="bench-$(date +%Y%m%d%H%M%S)-$$"
fixture="$("$g" bench-fixture --video "$video" --duration 2h --segment 4s 2>"$work/fixture.log")"
key_id="$(printf '%s' "$fixture" | sed -n 's/.*"key_id":"\([^"]*\)".*/\1/p')"
segments="$(printf '%s' "$fixture" | sed -n 's/.*"segments":\([0-9]*\).*/\1/p')"
segvideo="$video-seg"
"$g" bench-fixture --video "$segvideo" --duration 1m --segment 4s --renditions 720p --segment-bytes "$SEG_BYTES" >/dev/null 2>>"$work/fixture.log"
token="$("$g" token --video "$video" --subject bench-user --ttl 1h)"
segtoken="$("$g" token --video "$segvideo" --subject bench-user --ttl 1h)"

pids=()
stop_gateways() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	cleanup_tree
}
trap stop_gateways EXIT
declare -A pid key_url playlist_url segment_url
for n in "${gateways[@]}"; do
	GATEWAY_ADDR="${addr[$n]}" GATEWAY_REDIS_PREFIX="hlsvault:gwbench:$$:$n:" "${bin[$n]}" >"$work/gateway-$n.log" 2>&1 &
	pid[$n]=$!
	pids+=($!)
done
for n in "${gateways[@]}"; do
	a="${addr[$n]}"
	for _ in $(seq 100); do
		curl -fsS "http://$a/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS "http://$a/healthz" >/dev/null || { cat "$work/gateway-$n.log" >&2; exit 1; }
	# The playlists admit the sessions; the key and segments need them.
	playlist_url[$n]="http://$a/v1/videos/$video/720p/index.m3u8?v=1&token=$token"
	curl -fsS "${playlist_url[$n]}" >"$work/playlist-$n.m3u8"
	key_url[$n]="http://$a/v1/keys/$key_id?token=$token"
	[ "$(curl -fsS "${key_url[$n]}" | wc -c)" = 16 ] || { echo "gateway-bench: $n: key request failed" >&2; exit 1; }
	seg="$(curl -fsS "http://$a/v1/videos/$segvideo/720p/index.m3u8?token=$segtoken" | grep -v '^#' | head -n1)"
	case "$seg" in /*) seg="http://$a$seg" ;; esac
	segment_url[$n]="$seg"
	[ "$(curl -fsS "$seg" | wc -c)" -ge "$SEG_BYTES" ] || { echo "gateway-bench: $n: segment request failed" >&2; exit 1; }
done
playlist_bytes="$(wc -c <"$work/playlist-new.m3u8")"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"
# ms: wrk's latency ("850.00us", "1.23ms", "1.01s") in milliseconds.
ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }

results="$work/results.txt"
: >"$results"
# bench GATEWAY NAME URL CONNS: one wrk run; prints a summary line and
# records "name conns gateway rps p99ms".
bench() {
	local gw=$1 name=$2 url=$3 conns=$4 out t0 t1 start end rps p99 wall gw_cores wrk_cores
	out="$work/wrk-$gw-${name// /_}-c$conns.txt"
	t0="$(cpu_ticks "${pid[$gw]}")"
	start="$(date +%s%N)"
	TIMEFORMAT='%U %S'
	{ time wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "$url" >"$out"; } 2>"$out.time"
	end="$(date +%s%N)"
	t1="$(cpu_ticks "${pid[$gw]}")"
	rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
	p99="$(awk '$1 == "99%" {print $2}' "$out")"
	wall="$(awk -v a="$start" -v b="$end" 'BEGIN {print (b - a) / 1e9}')"
	gw_cores="$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v w="$wall" 'BEGIN {print (b - a) / hz / w}')"
	wrk_cores="$(awk -v w="$wall" '{print ($1 + $2) / w}' "$out.time")"
	printf '%-4s %-34s %10.0f req/s   p99 %-9s cores: gateway %.2f, wrk %.2f (of %d)\n' \
		"$gw" "$name (c$conns)" "$rps" "$p99" "$gw_cores" "$wrk_cores" "$(nproc)"
	grep -E 'Non-2xx|Socket errors' "$out" || true
	printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$gw" "$rps" "$(ms "$p99")" >>"$results"
}

echo "== playback gateway, wrk -t$THREADS -d$DURATION --latency on loopback ($(nproc) cores, shared by wrk and the gateway)"
echo "   synthetic 2-hour title: $segments segments per rendition; rendition playlist $playlist_bytes bytes; segments of $SEG_BYTES bytes"
[ -n "$BASELINE" ] && echo "   old: $BASELINE ($(git rev-parse --short "$BASELINE")), new: this tree; each run on old, then new"
for conns in "$LOW_CONNS" "$CONNS"; do
	for n in "${gateways[@]}"; do bench "$n" "key endpoint" "${key_url[$n]}" "$conns"; done
	for n in "${gateways[@]}"; do bench "$n" "segment (filesystem)" "${segment_url[$n]}" "$conns"; done
	for n in "${gateways[@]}"; do bench "$n" "rendition playlist (1800 seg)" "${playlist_url[$n]}" "$conns"; done
done
if [ -n "$BASELINE" ]; then
	echo
	echo "   ratios new/old (throughput: target >= 0.9; p99: lower is better)"
	awk -F '\t' '
		{ k = $1 " (c" $2 ")"; if (!(k in seen)) { seen[k] = 1; order[++n] = k } rps[k, $3] = $4; p99[k, $3] = $5 }
		END { for (i = 1; i <= n; i++) { k = order[i]
			printf "   %-40s throughput %.2f   p99 %.2f (%.2fms -> %.2fms)\n", k, rps[k, "new"] / rps[k, "old"],
				p99[k, "new"] / p99[k, "old"], p99[k, "old"], p99[k, "new"] } }' "$results"
fi
echo "   raw wrk output: $work/wrk-*.txt"
