# shellcheck shell=bash
# Helpers shared by scripts/deps.sh and scripts/services.sh. Source it; do not
# run it. Nothing here changes the system by itself.

# ROOT_DIR is the repository root (the parent of scripts/).
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT_DIR

# Go lives in /usr/local/go/bin on our machines, which non-login shells often
# do not have on PATH.
if [ -x /usr/local/go/bin/go ]; then
	case ":$PATH:" in
	*:/usr/local/go/bin:*) ;;
	*) PATH="/usr/local/go/bin:$PATH" ;;
	esac
	export PATH
fi

# Log lines carry the script name so that `make` output says who spoke.
PROG="$(basename "${0:-hlsvault}")"

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# ROOT_CMD is how we run a command as root: empty when we are root, sudo
# otherwise. It is resolved on first use, so that a run with nothing to
# install or start never needs root at all.
ROOT_CMD=()
ROOT_RESOLVED=0

resolve_root() {
	[ "$ROOT_RESOLVED" = 1 ] && return 0
	if [ "$(id -u)" -eq 0 ]; then
		ROOT_CMD=()
	elif have sudo; then
		if sudo -n true 2>/dev/null; then
			ROOT_CMD=(sudo -n)
		elif [ -t 0 ] && [ "${CI:-}" != "true" ]; then
			# Interactive: let sudo ask for the password.
			ROOT_CMD=(sudo)
		else
			die "root is needed to $1, sudo wants a password and there is no terminal (CI=${CI:-unset}); run as root or configure passwordless sudo"
		fi
	else
		die "root is needed to $1, but this is not root and sudo is not installed; run as root (or install sudo)"
	fi
	ROOT_RESOLVED=1
}

# as_root CMD...: run CMD as root (directly, or through sudo).
as_root() {
	resolve_root "run: $*"
	"${ROOT_CMD[@]+"${ROOT_CMD[@]}"}" "$@"
}

# as_postgres CMD...: run CMD as the postgres OS user (peer authentication on
# the local socket). Runs from / so that psql does not complain about a
# working directory it cannot read.
as_postgres() {
	(cd / && as_root runuser -u postgres -- "$@")
}

# wait_until SECONDS FUNC [ARGS...]: poll FUNC every half second until it
# succeeds or SECONDS have passed.
wait_until() {
	local timeout=$1
	shift
	local deadline=$((SECONDS + timeout))
	while ! "$@"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			return 1
		fi
		sleep 0.5
	done
}

# tcp_open HOST PORT: does something accept TCP connections there?
tcp_open() {
	(exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1
}

# version_ge A B: is version A >= version B (sort -V order)?
version_ge() {
	[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}
