#!/usr/bin/env bash
# Build the Debian bookworm test image's inputs into OUTDIR (root; needs debootstrap, apt, pip):
#   rootfs.tar          debootstrap --variant=minbase bookworm, with python3 and pip from
#                       Debian's .debs (for `docker import`), apt's caches and lists removed
#   debs/install/       procps and jq, and what they need that the image lacks (dpkg -i)
#   debs/upgrade/       a newer version of a package the image has (bookworm-security,
#                       -updates or -backports), with what it needs
#   wheels/app/         six 1.16.0 and idna 3.7, for the image's Python application layer
#   wheels/runtime/     six 1.17.0 and charset-normalizer 3.3.2 (a console script and
#                       compiled modules), for a `pip install` in a running container
# The .debs come from deb.debian.org through a private apt configuration that reads the new
# root's dpkg status: whatever the host runs, they are the ones that root lacks.
# Written to OUTDIR.partial and renamed: OUTDIR exists only when complete.
set -euo pipefail
out=${1:?usage: debian-bookworm.sh OUTDIR}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
python=${PYTHON:-python3}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
work="$out.partial"
# One build at a time (two test runs share the cache); a build that finished meanwhile is used.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
[ -f "$out/rootfs.tar" ] && exit 0
# A build killed inside debootstrap leaves the target's /proc and /sys mounted: never delete
# through them.
awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r \
  | while read -r mnt; do umount -l "$mnt" || true; done
rm -rf --one-file-system "$work"
mkdir -p "$work"/{debs/install,debs/upgrade,wheels/app,wheels/runtime,apt/lists/partial,apt/none}
root="$work/root"
log() { printf '[debian-bookworm] %s\n' "$*" >&2; }

log "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-pip bookworm "$root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

cat >"$work/apt/sources.list" <<EOF
deb [signed-by=$keyring] $mirror bookworm main
deb [signed-by=$keyring] $mirror bookworm-updates main
deb [signed-by=$keyring] $security bookworm-security main
deb [signed-by=$keyring] $mirror bookworm-backports main
EOF
apt_options=(
  -o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=$work/apt/none"
  -o "Dir::Etc::Preferences=$work/apt/none/preferences" -o "Dir::Etc::PreferencesParts=$work/apt/none"
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
  -o "Dir::State::status=$root/var/lib/dpkg/status" -o Debug::NoLocking=1
  -o APT::Architecture=amd64 -o APT::Install-Recommends=false -q=2
)
log "apt-get update (private configuration)"
apt-get "${apt_options[@]}" update
download() {  # download DIR [apt-get install arguments...]: the .debs the root lacks for them
  local directory=$1
  shift
  mkdir -p "$work/apt/cache/archives/partial"
  apt-get "${apt_options[@]}" -o "Dir::Cache::archives=$work/apt/cache/archives" \
    --download-only -y install "$@"
  mv "$work"/apt/cache/archives/*.deb "$directory"/
}
log "downloading procps and jq"
download "$work/debs/install" procps jq

installed() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Version}' "$1" 2>/dev/null; }
upgrade=
for package in zlib1g libzstd1 liblzma5 libpcre2-8-0 libexpat1 tzdata sysvinit-utils logsave; do
  for release in bookworm-security bookworm-updates bookworm-backports; do
    candidate=$(apt-cache "${apt_options[@]}" -t "$release" policy "$package" |
      awk '/Candidate:/ {print $2}')
    current=$(installed "$package")
    if [ -n "$current" ] && [ -n "$candidate" ] && [ "$candidate" != "(none)" ] &&
      dpkg --compare-versions "$candidate" gt "$current"; then
      upgrade="$package/$release"
      break 2
    fi
  done
done
[ -n "$upgrade" ] || { log "no newer version of any candidate package to upgrade to"; exit 1; }
log "downloading an upgrade of ${upgrade%/*} from ${upgrade#*/}"
download "$work/debs/upgrade" -t "${upgrade#*/}" "${upgrade%/*}"

log "downloading wheels from PyPI"
pip_download=("$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11
  --implementation cp --platform manylinux2014_x86_64 --platform any)
"${pip_download[@]}" -d "$work/wheels/app" six==1.16.0 idna==3.7
"${pip_download[@]}" -d "$work/wheels/runtime" six==1.17.0 charset-normalizer==3.3.2

log "rootfs.tar"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$root" -cf "$work/rootfs.tar" .
rm -rf --one-file-system "$root" "$work/apt" "$work/debootstrap.log"
rm -rf "$out"
mv "$work" "$out"
log "ready: $out"
