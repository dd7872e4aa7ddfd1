#!/usr/bin/env bash
# scripts/services.sh: make sure PostgreSQL, Redis and Azurite (blob) answer on
# 127.0.0.1, reusing whatever already runs there. Idempotent.
#
# Usage:
#   scripts/services.sh [postgres|redis|azurite]...   ensure running (default: all)
#   scripts/services.sh status                         report, change nothing
#   scripts/services.sh stop-azurite                   stop the Azurite this script started
#
# No systemd: services are started with their own commands (pg_ctlcluster,
# redis-server --daemonize, a detached azurite-blob), with `service` as a last
# resort. Each one gets WAIT_SECONDS to answer, or the script fails and shows
# the tail of its log.
#
# PostgreSQL access: the programs, scripts and tests connect as
#   postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
# (no password: config's, scripts/env.sh's and testenv's default). If that is refused
# (a fresh Debian cluster uses scram-sha-256 for TCP, and the postgres role has
# no password), this script puts
#   host all all 127.0.0.1/32 trust
#   host all all ::1/128      trust
# at the top of the cluster's pg_hba.conf, marked with a comment, and reloads.
# trust ignores the password, so URLs with and without one both work. This is
# for development and CI machines only: any local user may then connect as any
# role over TCP loopback.
#
# Environment (defaults in brackets):
#   POSTGRES_PORT [5432]  REDIS_PORT [6379]  AZURITE_BLOB_PORT [10000]
#   WAIT_SECONDS [30]     AZURITE_ARGS: extra arguments for azurite-blob
# A non-default AZURITE_BLOB_PORT gets its own data dir, log and pid file
# (.cache/azurite/*-PORT), so a second instance can run beside the first.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOST=127.0.0.1
POSTGRES_PORT="${POSTGRES_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
AZURITE_BLOB_PORT="${AZURITE_BLOB_PORT:-10000}"
WAIT_SECONDS="${WAIT_SECONDS:-30}"

AZ_DIR="$ROOT_DIR/.cache/azurite"
AZ_BIN="$AZ_DIR/node_modules/.bin/azurite-blob"
if [ "$AZURITE_BLOB_PORT" = 10000 ]; then AZ_SUFFIX=""; else AZ_SUFFIX="-$AZURITE_BLOB_PORT"; fi
AZ_DATA="$AZ_DIR/data$AZ_SUFFIX"
AZ_LOG="$AZ_DIR/azurite$AZ_SUFFIX.log"
AZ_PID="$AZ_DIR/azurite$AZ_SUFFIX.pid"

PG_URL="postgres://postgres@$HOST:$POSTGRES_PORT/postgres?sslmode=disable"
PG_HBA_MARK="# added by hlsvault scripts/services.sh: trust TCP loopback (dev/CI only)"

log_tail() {
	local f=$1
	if [ -r "$f" ]; then
		printf -- '--- last lines of %s ---\n' "$f" >&2
		tail -n 30 "$f" >&2
	elif [ -e "$f" ]; then
		printf -- '--- last lines of %s ---\n' "$f" >&2
		as_root tail -n 30 "$f" >&2 || true
	else
		printf -- '--- no log at %s ---\n' "$f" >&2
	fi
}

# ============================== PostgreSQL ==================================

pg_up() {
	if have pg_isready; then
		pg_isready -q -h "$HOST" -p "$POSTGRES_PORT" -U postgres -d postgres -t 2
	else
		tcp_open "$HOST" "$POSTGRES_PORT"
	fi
}

pg_login_ok() {
	PGCONNECT_TIMEOUT=5 psql "$PG_URL" -XAtqc 'select 1' >/dev/null 2>&1
}

# pg_cluster: "VERSION NAME" of the local cluster configured for our port.
pg_cluster() {
	have pg_lsclusters || return 0
	pg_lsclusters -h 2>/dev/null | awk -v p="$POSTGRES_PORT" '$3 == p {print $1, $2; exit}'
}

ensure_postgres() {
	if pg_up; then
		say "ok postgres $HOST:$POSTGRES_PORT (reusing running server)"
	else
		have pg_ctlcluster || die "postgres: nothing answers on $HOST:$POSTGRES_PORT and pg_ctlcluster is missing: run scripts/deps.sh"
		local cl ver name logf how
		cl="$(pg_cluster)"
		as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
		if [ -z "$cl" ]; then
			ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
			[ -n "$ver" ] || die "postgres: no PostgreSQL server installed in /usr/lib/postgresql: run scripts/deps.sh"
			name=main
			[ -d "/etc/postgresql/$ver/main" ] && name=hlsvault # main exists on another port
			say "postgres: creating cluster $ver/$name on port $POSTGRES_PORT"
			as_root env LANG=C.UTF-8 LC_ALL=C.UTF-8 \
				pg_createcluster --port "$POSTGRES_PORT" "$ver" "$name" --start ||
				die "postgres: pg_createcluster $ver $name failed"
			how="created and started cluster $ver/$name"
		else
			read -r ver name <<<"$cl"
			how="started cluster $ver/$name"
			# --skip-systemctl-redirect: without systemd as PID 1, never hand
			# over to systemctl. Old postgresql-common lacks the flag.
			local skip=()
			if grep -q skip-systemctl-redirect "$(command -v pg_ctlcluster)" 2>/dev/null; then
				skip=(--skip-systemctl-redirect)
			fi
			as_root pg_ctlcluster "${skip[@]+"${skip[@]}"}" "$ver" "$name" start ||
				{ [ "$POSTGRES_PORT" = 5432 ] && have service && as_root service postgresql start; } ||
				warn "postgres: every start command failed; waiting anyway"
		fi
		logf="/var/log/postgresql/postgresql-$ver-$name.log"
		if ! wait_until "$WAIT_SECONDS" pg_up; then
			log_tail "$logf"
			die "postgres: not answering on $HOST:$POSTGRES_PORT after ${WAIT_SECONDS}s"
		fi
		say "ok postgres $HOST:$POSTGRES_PORT ($how)"
	fi
	ensure_pg_access
}

ensure_pg_access() {
	if pg_login_ok; then
		say "ok postgres login postgres@$HOST:$POSTGRES_PORT works"
		return 0
	fi
	local hba tmp
	hba="$(as_postgres psql -p "$POSTGRES_PORT" -XAtqc 'show hba_file' 2>/dev/null)" ||
		die "postgres: $PG_URL is refused, and the server is not reachable as the postgres OS user (local socket) to fix its pg_hba.conf: make that URL work (trust on 127.0.0.1)"
	if as_root grep -qxF "$PG_HBA_MARK" "$hba"; then
		say "postgres: trust lines already in $hba; reloading"
	else
		say "postgres: adding 'host all all 127.0.0.1/32 trust' (and ::1) at the top of $hba"
		tmp="$(mktemp)"
		{
			printf '%s\n' "$PG_HBA_MARK"
			printf 'host all all 127.0.0.1/32 trust\n'
			printf 'host all all ::1/128 trust\n'
			as_root cat "$hba"
		} >"$tmp"
		# cp onto the existing file keeps its owner and mode.
		as_root cp "$tmp" "$hba"
		rm -f "$tmp"
	fi
	as_postgres psql -p "$POSTGRES_PORT" -XAtqc 'select pg_reload_conf()' >/dev/null ||
		die "postgres: reload failed"
	wait_until 10 pg_login_ok ||
		die "postgres: $PG_URL still refused after editing $hba"
	say "ok postgres login postgres@$HOST:$POSTGRES_PORT works (trust on loopback)"
}

# ================================ Redis =====================================

redis_up() {
	if have redis-cli; then
		[ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
	else
		tcp_open "$HOST" "$REDIS_PORT"
	fi
}

ensure_redis() {
	if redis_up; then
		say "ok redis $HOST:$REDIS_PORT (reusing running server)"
		return 0
	fi
	have redis-server || die "redis: nothing answers on $HOST:$REDIS_PORT and redis-server is missing: run scripts/deps.sh"
	local logname=ci.log
	[ "$REDIS_PORT" = 6379 ] || logname="ci-$REDIS_PORT.log"
	local logf="/var/log/redis/$logname"
	as_root mkdir -p /var/lib/redis /var/log/redis
	local args=(--daemonize yes --port "$REDIS_PORT" --save "" --appendonly no
		--dir /var/lib/redis --logfile "$logf")
	# "-::1" (optional address) needs Redis >= 6.2; older ones get IPv4 only.
	as_root redis-server --bind 127.0.0.1 -::1 "${args[@]}" ||
		as_root redis-server --bind 127.0.0.1 "${args[@]}" ||
		{ [ "$REDIS_PORT" = 6379 ] && as_root service redis-server start; } ||
		warn "redis: every start command failed; waiting anyway"
	if ! wait_until "$WAIT_SECONDS" redis_up; then
		log_tail "$logf"
		die "redis: not answering on $HOST:$REDIS_PORT after ${WAIT_SECONDS}s"
	fi
	say "ok redis $HOST:$REDIS_PORT (started, log $logf)"
}

# =============================== Azurite ====================================

azurite_up() {
	if have curl; then
		local code
		code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
			"http://$HOST:$AZURITE_BLOB_PORT/devstoreaccount1?comp=list" 2>/dev/null)" || true
		[ -n "$code" ] && [ "$code" != 000 ]
	else
		tcp_open "$HOST" "$AZURITE_BLOB_PORT"
	fi
}

# pid_alive PID: is the process running? A zombie (killed, not yet reaped:
# our own child, or an orphan under a PID 1 that does not reap) counts as dead.
pid_alive() {
	kill -0 "$1" 2>/dev/null || return 1
	local state
	state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# azurite_up_or_exited: stop waiting when it answers, or when the process we
# started is gone (the pid file is written by the child, so allow it a moment).
azurite_exited() {
	[ -s "$AZ_PID" ] && ! our_azurite_pid >/dev/null
}
azurite_up_or_exited() {
	azurite_exited || azurite_up
}

# our_azurite_pid: print the pid from our pid file if that process is alive
# and is an Azurite (guards against a recycled pid).
our_azurite_pid() {
	[ -f "$AZ_PID" ] || return 1
	local pid
	pid="$(cat "$AZ_PID" 2>/dev/null)"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	pid_alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q azurite || return 1
	printf '%s\n' "$pid"
}

ensure_azurite() {
	local pid
	if azurite_up; then
		local who="reusing running server"
		if pid="$(our_azurite_pid)"; then who="reusing, started earlier by this script, pid $pid"; fi
		say "ok azurite $HOST:$AZURITE_BLOB_PORT ($who)"
		return 0
	fi
	[ -x "$AZ_BIN" ] || die "azurite: nothing answers on $HOST:$AZURITE_BLOB_PORT and $AZ_BIN is missing: run scripts/deps.sh"
	if pid="$(our_azurite_pid)"; then
		# Started earlier but not answering: maybe still starting, maybe hung.
		if wait_until "$WAIT_SECONDS" azurite_up; then
			say "ok azurite $HOST:$AZURITE_BLOB_PORT (reusing, started earlier by this script, pid $pid)"
			return 0
		fi
		warn "azurite: pid $pid from $AZ_PID does not answer; restarting it"
		stop_azurite
	fi
	rm -f "$AZ_PID"
	mkdir -p "$AZ_DATA"
	local -a extra=()
	if [ -n "${AZURITE_ARGS:-}" ]; then read -r -a extra <<<"$AZURITE_ARGS"; fi
	printf '=== %s starting azurite-blob on %s:%s\n' "$(date -u +%FT%TZ)" "$HOST" "$AZURITE_BLOB_PORT" >>"$AZ_LOG"
	# setsid: its own session, so a Ctrl-C in the terminal running make does
	# not kill it. The inner shell writes its own pid and then becomes
	# azurite (exec), so the pid file is right whether or not setsid forks.
	# All three descriptors are redirected: nothing holds make's or CI's pipes.
	# shellcheck disable=SC2016 # expanded by the inner shell
	setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$AZ_PID" \
		"$AZ_BIN" --blobHost "$HOST" --blobPort "$AZURITE_BLOB_PORT" \
		--skipApiVersionCheck --loose --disableTelemetry \
		--location "$AZ_DATA" --silent "${extra[@]+"${extra[@]}"}" \
		</dev/null >>"$AZ_LOG" 2>&1 &
	if ! wait_until "$WAIT_SECONDS" azurite_up_or_exited; then
		log_tail "$AZ_LOG"
		stop_azurite >/dev/null 2>&1 || true
		die "azurite: not answering on $HOST:$AZURITE_BLOB_PORT after ${WAIT_SECONDS}s"
	fi
	if azurite_exited; then
		log_tail "$AZ_LOG"
		rm -f "$AZ_PID"
		die "azurite: exited during startup on $HOST:$AZURITE_BLOB_PORT (see the log above)"
	fi
	say "ok azurite $HOST:$AZURITE_BLOB_PORT (started, pid $(cat "$AZ_PID"), log ${AZ_LOG#"$ROOT_DIR"/})"
}

stop_azurite() {
	local pid
	if ! pid="$(our_azurite_pid)"; then
		rm -f "$AZ_PID"
		say "azurite: none started by this script on port $AZURITE_BLOB_PORT (no live pid in ${AZ_PID#"$ROOT_DIR"/}); nothing to stop"
		return 0
	fi
	# It leads its own process group (setsid): signal the group, then the pid.
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	local n=0
	while pid_alive "$pid" && [ "$n" -lt 25 ]; do sleep 0.2; n=$((n + 1)); done # 5 s
	if pid_alive "$pid"; then
		warn "azurite: pid $pid ignored SIGTERM for 5s; sending SIGKILL"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		n=0
		while pid_alive "$pid" && [ "$n" -lt 10 ]; do sleep 0.2; n=$((n + 1)); done
	fi
	pid_alive "$pid" && die "azurite: pid $pid survived SIGKILL"
	rm -f "$AZ_PID"
	say "ok azurite stopped (pid $pid, port $AZURITE_BLOB_PORT)"
}

status() {
	local rc=0
	if pg_up; then say "up   postgres $HOST:$POSTGRES_PORT"; else say "down postgres $HOST:$POSTGRES_PORT"; rc=1; fi
	if redis_up; then say "up   redis    $HOST:$REDIS_PORT"; else say "down redis    $HOST:$REDIS_PORT"; rc=1; fi
	if azurite_up; then say "up   azurite  $HOST:$AZURITE_BLOB_PORT"; else say "down azurite  $HOST:$AZURITE_BLOB_PORT"; rc=1; fi
	return "$rc"
}

main() {
	if [ "$#" -eq 0 ]; then set -- postgres redis azurite; fi
	case "$1" in
	stop-azurite)
		stop_azurite
		return
		;;
	status)
		status
		return
		;;
	esac
	local s
	for s in "$@"; do
		case "$s" in
		postgres | postgresql) ensure_postgres ;;
		redis) ensure_redis ;;
		azurite) ensure_azurite ;;
		*) die "unknown service or command '$s' (postgres, redis, azurite, status, stop-azurite)" ;;
		esac
	done
}

main "$@"
