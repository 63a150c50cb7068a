#!/usr/bin/env bash
# scripts/setup.sh -- installs what building and testing mcpsonde needs; idempotent.
#
# Debian packages: only the missing ones, with one `apt-get update` first, and nothing at all
# (no apt, no network) when everything is there. Then the e2e tests' npm packages, pinned by
# tests/package-lock.json: `npm ci` when tests/node_modules is missing or older than the lock.
# Mounting tracefs is mcpsonde's job, not this script's.
set -euo pipefail

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# Build: clang/llvm/bpftool/libbpf for the BPF side, the -dev libraries the Makefile links,
# uthash (header-only hash tables of the pipeline).
# Tests: cmocka (unit), node + npm (e2e), strace (e2e premise checks), socat, jq, prometheus
# (metrics scrape tests), procps/coreutils basics. Bench: strace, socat, nginx.
packages=(
	clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libjansson-dev libmicrohttpd-dev uthash-dev
	libhttp-parser-dev # the HTTP/1.1 parser of the HTTP transport (src/http.c)
	libcmocka-dev pkg-config make gcc
	prometheus socat strace jq procps coreutils
	curl # e2e: HTTP requests the MCP SDKs never send (a malformed body, a wrong token, Mcp-Method)
	nginx # bench: the reverse proxy in front of the HTTP server (bench/http-peers.mjs; never as a service)
	# Kubernetes tests: a real container runtime driven through the CRI (containerd, runc),
	# podman (also builds the image), a static libc for the pause binary, systemd-analyze.
	containerd runc podman libc6-dev systemd
)
# Node comes with the machine (or from nodesource, which bundles npm); Debian's own nodejs
# and npm only when there is no node at all, since Debian's npm conflicts with nodesource's.
if ! command -v node >/dev/null 2>&1; then
	packages+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
	packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	if (($(id -u) != 0)); then
		echo "setup.sh: missing Debian packages: ${missing[*]} (run as root: apt-get install ${missing[*]})" >&2
		exit 1
	fi
	echo "setup.sh: installing ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The bench runs nginx itself, from a config of its own: the service Debian enables on install
	# (the default site on port 80) is not wanted, so the one this script installed is turned off.
	if [[ " ${missing[*]} " == *" nginx "* ]] && [[ -d /run/systemd/system ]]; then
		systemctl disable --now nginx >/dev/null 2>&1 || true
	fi
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 18)); then
	echo "setup.sh: node $(node --version) is too old: the e2e tests need node >= 18 (20 recommended)" >&2
	exit 1
fi

# npm ci recreates node_modules; the stamp says from which lock file.
stamp=tests/node_modules/.mcpsonde-lock-stamp
if [[ ! -f $stamp || tests/package-lock.json -nt $stamp ]]; then
	echo "setup.sh: npm ci in tests/"
	(cd tests && npm ci --no-audit --no-fund --loglevel=error)
	touch "$stamp"
fi
