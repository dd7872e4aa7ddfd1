#!/usr/bin/env bash
# make bench: figures measured in one run on this machine (medians of
# interleaved runs; compare only figures from the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
go build -o bin/ ./cmd/...

echo "== AES-128-CBC: segment encryption vs the in-process ceiling (go test -bench, 5 runs)"
go test -run '^$' -bench 'EncryptReader|CBCCeiling' -benchtime 1s -count 5 ./internal/segcrypt/ | tee .cache/bench-segcrypt.txt
awk 'function mbs(  i){for(i=2;i<=NF;i++)if($i=="MB/s")return $(i-1)}
  /^BenchmarkEncryptReader/ {e[++ne]=mbs()} /^BenchmarkCBCCeiling/ {c[++nc]=mbs()}
  function med(a,n,  i,j,t){for(i=1;i<=n;i++)for(j=i+1;j<=n;j++)if(a[j]<a[i]){t=a[i];a[i]=a[j];a[j]=t} return a[int((n+1)/2)]}
  END {me=med(e,ne); mc=med(c,nc); printf "encrypt reader %.0f MB/s, ceiling %.0f MB/s, ratio %.2f (medians)\n", me, mc, me/mc}' .cache/bench-segcrypt.txt

echo
echo "== storage: 2 MiB Put, filesystem and Azurite"
go test -run '^$' -bench 'Put' -benchtime 1s -count 3 ./internal/storage/

echo
echo "== backfill: re-encryption throughput, re-encrypt vs re-transcode, peak RSS"
bash scripts/backfill-bench.sh

echo
echo "== pre-transcode analysis vs the transcode (20 s 1080p, 4 rungs)"
./bin/hlsbench analysis

echo
echo "== worker vs bare ffmpeg (1080p, 4 rungs)"
./bin/hlsbench "$@"


echo
echo "== issue 12's title: two audio tracks, subtitles, I-frame playlists, storyboard (1080p, 4 rungs)"
./bin/hlsbench renditions

echo
echo "== chunked vs unchunked transcode (1080p, 120 s; two worker processes), time-to-publish model"
./bin/hlsbench chunks

echo
echo "== playback gateway (wrk)"
# Against a baseline when there is one: GATEWAY_BENCH_BASELINE as given, or
# the merge base with main when this tree is a branch that differs from it.
if [ -z "${GATEWAY_BENCH_BASELINE:-}" ] && base="$(git merge-base HEAD main 2>/dev/null)" && [ "$base" != "$(git rev-parse HEAD)" ]; then
	GATEWAY_BENCH_BASELINE="$base"
fi
GATEWAY_BENCH_BASELINE="${GATEWAY_BENCH_BASELINE:-}" bash scripts/gateway-bench.sh

echo
echo "== load: 200 small jobs across two worker processes"
./bin/hlsbench load -jobs 200 -workers 2
