#!/usr/bin/env bash
# The base of the drifttools image, made here because there is no registry to pull one from:
#   deploy/image/base.sh [TAG]     (root; needs debootstrap and a Docker Engine)
# debootstrap --variant=minbase bookworm with python3 (the runtime), libmagic1 (file type
# detection) and ca-certificates (object stores over TLS), apt's caches and lists removed,
# then `docker import` as TAG (default drifttools-base:bookworm). The build stage of
# deploy/Dockerfile installs its toolchain on top of the same base, with apt.
# DRIFTTOOLS_CA_BUNDLE=FILE adds the certificates in FILE to the base's trust store (a
# build host behind a TLS-inspecting proxy: the build stage downloads from PyPI and crates.io).
set -euo pipefail
tag=${1:-drifttools-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d "${TMPDIR:-/tmp}/drifttools-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
debootstrap --variant=minbase --include=python3,libmagic1,ca-certificates bookworm "$root" \
  "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# the build stage's apt reads the security suite too (a current rustc)
echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
echo "deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main" \
  >>"$root/etc/apt/sources.list"
if [ -n "${DRIFTTOOLS_CA_BUNDLE:-}" ]; then
  cat "$DRIFTTOOLS_CA_BUNDLE" >>"$root/etc/ssl/certs/ca-certificates.crt"
fi
tar --numeric-owner --xattrs -C "$root" -cf "$work/rootfs.tar" .
docker import "$work/rootfs.tar" "$tag" >/dev/null
echo "$tag"
