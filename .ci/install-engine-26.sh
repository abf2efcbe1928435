#!/usr/bin/env bash
# Fetch Debian trixie's docker.io (dockerd 26.1) and its containerd into a private directory, without
# touching the system's apt state or installed packages, and print the path of the extracted dockerd.
#
#   bash .ci/install-engine-26.sh [DEST]          # DEST defaults to /opt/snapper-engine-26
#   export SNAPPER_DOCKERD=$(bash .ci/install-engine-26.sh)
#   export SNAPPER_DOCKERD_PATH=/opt/snapper-engine-26/usr/sbin:/opt/snapper-engine-26/usr/bin
#   python3 -m pytest -q tests/integration
#
# runc is deliberately NOT taken from trixie (its runc needs glibc 2.38; bookworm has 2.36): the private
# daemon keeps finding the system /usr/sbin/runc through PATH. Only stdout carries the dockerd path;
# progress goes to stderr. Safe to run again: it re-downloads into a fresh private apt state.
set -euo pipefail

DEST="${1:-/opt/snapper-engine-26}"
SUITE="${SNAPPER_ENGINE_SUITE:-trixie}"
PACKAGES=(docker.io containerd tini)

log() { printf 'install-engine-26: %s\n' "$*" >&2; }

# Reuse the Debian mirror that this machine's apt already uses (deb822 *.sources or one-line *.list),
# skipping the security archive; fall back to the default mirror.
find_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(sed -n -E \
            -e 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' \
            -e 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$f" |
            grep -E '/debian/?$' | grep -v -- '-security' | head -n 1 || true)
        if [ -n "$uri" ]; then
            printf '%s\n' "${uri%/}"
            return
        fi
    done
    printf '%s\n' "http://deb.debian.org/debian"
}

MIRROR=$(find_mirror)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
ARCH=$(dpkg --print-architecture)
WORK=$(mktemp -d /tmp/snp-apt-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/parts" "$WORK/prefs" "$WORK/state/lists/partial" "$WORK/cache/archives/partial" "$WORK/debs"

if [ -f "$KEYRING" ]; then
    echo "deb [arch=$ARCH signed-by=$KEYRING] $MIRROR $SUITE main" >"$WORK/sources.list"
else
    echo "deb [arch=$ARCH] $MIRROR $SUITE main" >"$WORK/sources.list"
fi
log "using $(cat "$WORK/sources.list")"

# A private apt: own sources list, no sources.list.d, own lists and cache, no pinning files.
APT=(
    -o "Dir::Etc::sourcelist=$WORK/sources.list"
    -o "Dir::Etc::sourceparts=$WORK/parts"
    -o "Dir::Etc::preferencesparts=$WORK/prefs"
    -o "Dir::Etc::preferences=$WORK/prefs/none"
    -o "Dir::State=$WORK/state"
    -o "Dir::State::status=$WORK/state/status"
    -o "Dir::Cache=$WORK/cache"
    -o "APT::Architecture=$ARCH"
    -o "APT::Architectures::=$ARCH"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
)
touch "$WORK/state/status"

apt-get "${APT[@]}" -q update >&2
for p in "${PACKAGES[@]}"; do
    log "$p $(apt-cache "${APT[@]}" show --no-all-versions "$p" | sed -n 's/^Version: //p')"
done
(cd "$WORK/debs" && apt-get "${APT[@]}" -q download "${PACKAGES[@]}" >&2)

# Start from an empty DEST, but only ever delete a directory this script made.
if [ -e "$DEST" ]; then
    if [ -f "$DEST/.snapper-engine-26" ]; then
        rm -rf "$DEST"
    else
        log "refusing to overwrite $DEST: it was not made by this script"
        exit 1
    fi
fi
mkdir -p "$DEST"
for deb in "$WORK"/debs/*.deb; do
    log "extracting $(basename "$deb")"
    dpkg-deb -x "$deb" "$DEST"
    basename "$deb" >>"$DEST/.snapper-engine-26"
done

# dockerd looks up docker-init (tini) and docker-proxy on PATH; containerd looks up its shim on PATH.
for b in usr/sbin/dockerd usr/bin/containerd usr/bin/containerd-shim-runc-v2; do
    [ -x "$DEST/$b" ] || { log "missing $DEST/$b after extraction"; exit 1; }
done
log "dockerd: $("$DEST/usr/sbin/dockerd" --version)"
log "containerd: $("$DEST/usr/bin/containerd" --version)"
log "run tests with: SNAPPER_DOCKERD=$DEST/usr/sbin/dockerd SNAPPER_DOCKERD_PATH=$DEST/usr/sbin:$DEST/usr/bin"
printf '%s\n' "$DEST/usr/sbin/dockerd"
