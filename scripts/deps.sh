#!/usr/bin/env bash
# scripts/deps.sh: install what the project needs, on Debian 12 / Ubuntu.
#
# Idempotent: a component already present is left alone, and apt-get update
# runs only when something must be installed. Root is needed only for apt
# (sudo is used when not root). Azurite goes into the project-local prefix
# .cache/azurite from npm, without root.
#
# Environment:
#   AZURITE_VERSION   npm version spec for Azurite (default: 3)
#   CI=true           never prompt (sudo -n)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AZURITE_VERSION="${AZURITE_VERSION:-3}"
AZURITE_PREFIX="$ROOT_DIR/.cache/azurite"
AZURITE_BIN="$AZURITE_PREFIX/node_modules/.bin/azurite-blob"
MIN_NODE_MAJOR=18

have apt-get || die "apt-get not found: this script supports Debian and Ubuntu only"

APT_UPDATED=0
apt_install() {
	if [ "$APT_UPDATED" = 0 ]; then
		say "deps: apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive \
			apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null ||
			die "apt-get update failed"
		APT_UPDATED=1
	fi
	say "deps: apt-get install $*"
	# C.UTF-8 so that the cluster created by the postgresql package gets UTF8
	# encoding rather than SQL_ASCII on machines without a locale.
	as_root env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8 \
		apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=600 \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"$@" || die "apt-get install $* failed"
}

# --- how to tell whether each component is there, and its version ---------

pg_bindir() {
	local d
	d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n1)"
	[ -n "$d" ] && [ -x "$d/postgres" ] && printf '%s\n' "$d"
}

present_ffmpeg() { have ffmpeg && have ffprobe; }
# bubblewrap: the worker's decoder sandbox (DECODER_SANDBOX=bwrap, the default).
present_bubblewrap() { have bwrap; }
present_postgresql() { have pg_ctlcluster && have psql && have pg_isready && [ -n "$(pg_bindir)" ]; }
present_redis() { have redis-server && have redis-cli; }
present_nodejs() { have node; }
present_npm() { have npm; }
present_curl() { have curl; }
present_ca_certificates() { [ -s /etc/ssl/certs/ca-certificates.crt ]; }
present_openssl() { have openssl; }
present_make() { have make; }
present_chromium() { [ -x /usr/bin/chromium ]; }
present_wrk() { have wrk; }

version_ffmpeg() { ffmpeg -hide_banner -version 2>/dev/null | awk 'NR==1 {print $3}'; }
version_bubblewrap() { bwrap --version | awk '{print $2}'; }
version_postgresql() { "$(pg_bindir)/postgres" --version | awk '{print $3}'; }
version_redis() { redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'; }
version_nodejs() { node --version | sed 's/^v//'; }
version_npm() { npm --version 2>/dev/null | tail -n1; }
version_curl() { curl --version | awk 'NR==1 {print $2}'; }
version_ca_certificates() { dpkg-query -W -f='${Version}' ca-certificates 2>/dev/null || echo present; }
version_openssl() { openssl version | awk '{print $2}'; }
version_make() { make --version | awk 'NR==1 {print $3}'; }
version_chromium() { /usr/bin/chromium --version 2>/dev/null | awk '{print $2}'; }
version_wrk() { wrk -v 2>&1 | awk 'NR==1 {print $2}'; }

# component name -> apt package
declare -A PKG=(
	[ffmpeg]=ffmpeg
	[bubblewrap]=bubblewrap
	[postgresql]=postgresql
	[redis]=redis-server
	[nodejs]=nodejs
	[npm]=npm
	[curl]=curl
	[ca-certificates]=ca-certificates
	[openssl]=openssl
	[make]=make
	[chromium]=chromium
	[wrk]=wrk
)
# npm is handled in a second pass: a nodejs from NodeSource already ships npm,
# and Debian's npm package would conflict with it.
COMPONENTS=(ffmpeg bubblewrap postgresql redis nodejs curl ca-certificates openssl make chromium wrk)

declare -A STATUS=()

check_or_install() {
	local missing=() c fn
	for c in "$@"; do
		fn="present_${c//-/_}"
		if "$fn"; then
			STATUS[$c]="already installed"
		else
			missing+=("${PKG[$c]}")
			STATUS[$c]="installed"
		fi
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		apt_install "${missing[@]}"
		for c in "$@"; do
			fn="present_${c//-/_}"
			"$fn" || die "$c is still missing after apt-get install ${PKG[$c]}"
		done
	fi
}

report() {
	local c=$1 fn="version_${1//-/_}"
	say "ok $c $("$fn") (${STATUS[$c]})"
}

# --- Go: never from apt (Debian's golang is far older than go.mod wants) ----

check_go() {
	have go || die "go not found on PATH nor in /usr/local/go/bin: install Go $(go_mod_version) or newer from https://go.dev/dl/ into /usr/local/go (Debian's golang package is too old)"
	local v want toolchain
	v="$(go env GOVERSION | sed 's/^go//')"
	want="$(go_mod_version)"
	if [ -n "$want" ] && ! version_ge "$v" "$want"; then
		toolchain="$(go env GOTOOLCHAIN)"
		case "$toolchain" in
		local*) die "go $v is older than go.mod's go $want and GOTOOLCHAIN=$toolchain forbids fetching a newer one: install Go $want into /usr/local/go" ;;
		*) warn "go $v is older than go.mod's go $want: the go command will fetch go$want through the module proxy (GOTOOLCHAIN=$toolchain)" ;;
		esac
	fi
	say "ok go $v (already installed: $(command -v go))"
}

go_mod_version() {
	sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$ROOT_DIR/go.mod" 2>/dev/null | head -n1
}

# --- Azurite: npm, project-local, no root ----------------------------------

check_azurite() {
	local major v
	major="$(node -p 'process.versions.node.split(".")[0]')"
	if [ "$major" -lt "$MIN_NODE_MAJOR" ]; then
		die "node $(version_nodejs) is too old for Azurite 3 (needs >= $MIN_NODE_MAJOR); install a newer nodejs (e.g. from NodeSource) and rerun"
	fi
	if [ -x "$AZURITE_BIN" ]; then
		STATUS[azurite]="already installed in .cache/azurite"
	else
		say "deps: npm install --prefix .cache/azurite azurite@$AZURITE_VERSION"
		mkdir -p "$AZURITE_PREFIX"
		npm install --prefix "$AZURITE_PREFIX" "azurite@$AZURITE_VERSION" \
			--no-audit --no-fund --no-update-notifier --loglevel=error ||
			die "npm install azurite@$AZURITE_VERSION failed"
		[ -x "$AZURITE_BIN" ] || die "npm install finished but $AZURITE_BIN is missing"
		STATUS[azurite]="installed in .cache/azurite"
	fi
	v="$(node -p "require(process.argv[1]).version" "$AZURITE_PREFIX/node_modules/azurite/package.json")"
	say "ok azurite $v (${STATUS[azurite]})"
}

# hls.js, Shaka Player and playwright-core for the browser playback tests
# and the demo.
check_browser_e2e() {
	local d="$ROOT_DIR/e2e/browser"
	if [ -f "$d/node_modules/hls.js/dist/hls.min.js" ] && [ -f "$d/node_modules/playwright-core/package.json" ] &&
		[ -f "$d/node_modules/shaka-player/dist/shaka-player.compiled.js" ]; then
		say "ok e2e/browser node_modules (already installed)"
		return 0
	fi
	npm ci --prefix "$d" --no-audit --no-fund --no-update-notifier --loglevel=error || die "npm ci e2e/browser failed"
	say "ok e2e/browser node_modules (installed)"
}

# standardwebhooks (npm) for the webhook signature test in another language.
check_webhooks_e2e() {
	local d="$ROOT_DIR/e2e/webhooks"
	if [ -f "$d/node_modules/standardwebhooks/package.json" ]; then
		say "ok e2e/webhooks node_modules (already installed)"
		return 0
	fi
	npm ci --prefix "$d" --no-audit --no-fund --no-update-notifier --loglevel=error || die "npm ci e2e/webhooks failed"
	say "ok e2e/webhooks node_modules (installed)"
}

# hls-parser (strict) and m3u8-parser for the independent playlist checks
# (internal/testenv/hlscheck).
check_validate_e2e() {
	local d="$ROOT_DIR/e2e/validate"
	if [ -f "$d/node_modules/hls-parser/package.json" ] && [ -f "$d/node_modules/m3u8-parser/package.json" ]; then
		say "ok e2e/validate node_modules (already installed)"
		return 0
	fi
	npm ci --prefix "$d" --no-audit --no-fund --no-update-notifier --loglevel=error || die "npm ci e2e/validate failed"
	say "ok e2e/validate node_modules (installed)"
}

main() {
	check_go
	check_or_install "${COMPONENTS[@]}"
	check_or_install npm
	local c
	for c in "${COMPONENTS[@]}" npm; do
		report "$c"
	done
	check_azurite
	check_browser_e2e
	check_webhooks_e2e
	check_validate_e2e
}

main "$@"
