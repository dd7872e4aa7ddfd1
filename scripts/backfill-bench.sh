#!/usr/bin/env bash
# scripts/backfill-bench.sh: the backfill figures of `make bench`, measured
# in one run on this machine (medians; compare only figures from the same
# run).
#
#   re-encryption throughput, filesystem→filesystem and Azurite→Azurite, and
#     its ratio to the in-process AES-128-CBC ceiling × the cores it used
#   re-encrypting a title / re-transcoding it through the pipeline
#   peak RSS re-encrypting a short and a long title (must be the same)
#
# Extra arguments go to the benchcmd program (e.g. -runs 5 -long-mb 2048).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
mkdir -p .cache bin
out=.cache/bench-backfill.txt

echo "== backfill: re-encryption throughput vs the AES-128-CBC ceiling (go test -bench, 3 runs each, interleaved)"
: >"$out"
for i in 1 2 3; do
	go test -run '^$' -bench 'AESCeiling' -benchtime 1s -count 1 ./internal/backfill/ | grep '^Benchmark' | tee -a "$out"
	go test -run '^$' -bench 'Reencrypt' -benchtime 5x -count 1 ./internal/backfill/ | grep '^Benchmark' | tee -a "$out"
done
awk '
  function val(unit,  i){for(i=2;i<=NF;i++)if($i==unit)return $(i-1); return 0}
  function med(a,n,  i,j,t){for(i=1;i<=n;i++)for(j=i+1;j<=n;j++)if(a[j]<a[i]){t=a[i];a[i]=a[j];a[j]=t} return a[int((n+1)/2)]}
  /^BenchmarkAESCeiling/        {c[++nc]=val("MB/s")}
  /^BenchmarkReencrypt\/fs/     {f[++nf]=val("MB/s"); fc[nf]=val("cores"); fe[nf]=val("encrypt-MB/s")}
  /^BenchmarkReencrypt\/azurite/{a[++na]=val("MB/s"); ac[na]=val("cores")}
  /^BenchmarkReencryptStream/   {s[++ns]=val("MB/s"); sc[ns]=val("cores")}
  END {
    C=med(c,nc); F=med(f,nf); FC=med(fc,nf); A=med(a,na); AC=med(ac,na); S=med(s,ns); SC=med(sc,ns)
    printf "\n%-72s %10s  %s\n", "figure (medians)", "value", "target"
    printf "%-72s %10.0f\n", "AES-128-CBC ceiling, one core, in process (MB/s)", C
    printf "%-72s %10.0f\n", "re-encrypt filesystem→filesystem, verified and published-ready (MB/s)", F
    printf "%-72s %10.2f\n", "  cores used", FC
    printf "%-72s %10.2f  ≥ 0.5\n", "  MB/s / (ceiling × cores)", F/(C*FC)
    printf "%-72s %10.0f\n", "re-encryption pass alone, filesystem (MB/s)", S
    printf "%-72s %10.2f\n", "  cores used", SC
    printf "%-72s %10.2f  ≥ 0.5\n", "  MB/s / (ceiling × cores)", S/(C*SC)
    printf "%-72s %10.0f\n", "re-encrypt Azurite→Azurite, verified (MB/s)", A
    printf "%-72s %10.2f\n", "  cores used", AC
    printf "%-72s %10.2f\n", "  MB/s / (ceiling × cores)", A/(C*AC)
  }' "$out"

echo
echo "== backfill: re-encrypt vs re-transcode, and peak RSS short vs long title"
go build -o bin/backfill-bench ./internal/backfill/benchcmd
./bin/backfill-bench "$@"

echo
echo "== backfill: a 20,000-title catalogue: discovery, start, peak RSS 5,000 vs 20,000 titles, two workers, 100 TB extrapolation"
go build -o bin/ ./cmd/enqueue ./cmd/worker
# Re-encryption MB/s of one core, filesystem, from the go test benchmark above.
per_core=$(awk '
  function val(unit,  i){for(i=2;i<=NF;i++)if($i==unit)return $(i-1); return 0}
  function med(a,n,  i,j,t){for(i=1;i<=n;i++)for(j=i+1;j<=n;j++)if(a[j]<a[i]){t=a[i];a[i]=a[j];a[j]=t} return a[int((n+1)/2)]}
  /^BenchmarkReencrypt\/fs/ {f[++nf]=val("MB/s"); fc[nf]=val("cores")}
  END {c=med(fc,nf); printf "%.0f", (c>0 ? med(f,nf)/c : 0)}' "$out")
# BENCH_CATALOGUE_ARGS, e.g. "-titles 100000 -workers 4", goes to benchcmd catalogue.
# shellcheck disable=SC2086
./bin/backfill-bench catalogue -reencrypt-mbps "${per_core:-0}" ${BENCH_CATALOGUE_ARGS:-}
