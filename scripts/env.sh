# shellcheck shell=bash
# scripts/env.sh: source it (the Makefile does, in every recipe that runs go).
# Sets the development defaults for variables that are unset or empty, and
# puts Go on PATH. Safe under `set -euo pipefail`; changes nothing else
# (GOFLAGS is left as it is).

# PostgreSQL: no password (none is ever printed or kept in a default): local
# PostgreSQL trusts TCP loopback, a rule scripts/services.sh installs when
# needed.
# The TEST_* defaults are the local services, not copies of the non-test
# variables: tests create and drop databases and containers, and must not
# follow a DATABASE_URL that points somewhere else.
__hlsv_pg='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
# Azurite's well-known development account. The Go SDK does not accept
# UseDevelopmentStorage=true, so it is spelled out.
__hlsv_az='DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;'
: "${DATABASE_URL:=$__hlsv_pg}"
: "${TEST_DATABASE_URL:=$__hlsv_pg}"
: "${REDIS_URL:=redis://127.0.0.1:6379/0}"
: "${TEST_REDIS_ADDR:=127.0.0.1:6379}"
: "${AZURE_STORAGE_CONNECTION_STRING:=$__hlsv_az}"
: "${TEST_AZURE_STORAGE_CONNECTION_STRING:=$__hlsv_az}"
unset __hlsv_pg __hlsv_az
export DATABASE_URL TEST_DATABASE_URL REDIS_URL TEST_REDIS_ADDR \
	AZURE_STORAGE_CONNECTION_STRING TEST_AZURE_STORAGE_CONNECTION_STRING

# Go: /usr/local/go/bin first (often missing from non-login shells), and the
# directory `go install` writes to last.
if [ -d /usr/local/go/bin ]; then
	case ":${PATH:-}:" in
	*:/usr/local/go/bin:*) ;;
	*) PATH="/usr/local/go/bin${PATH:+:$PATH}" ;;
	esac
fi
__hlsv_gobin="${GOBIN:-${GOPATH:-${HOME:-/root}/go}}"
__hlsv_gobin="${__hlsv_gobin%%:*}"
[ -n "${GOBIN:-}" ] || __hlsv_gobin="$__hlsv_gobin/bin"
case ":${PATH:-}:" in
*":$__hlsv_gobin:"*) ;;
*) PATH="${PATH:+$PATH:}$__hlsv_gobin" ;;
esac
unset __hlsv_gobin
export PATH
