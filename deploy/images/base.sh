#!/usr/bin/env bash
# The services' base image, made without a Docker daemon or a registry: Debian bookworm (debootstrap, minbase) with
# OpenJDK 17's headless runtime, the JVM the project is tested on. Written as a `docker save`-style tarball (one
# layer), which `./memgen images` builds the services' images on (Jib's tar:// base) and which `docker load` accepts.
# Needs root (debootstrap runs the packages' scripts in a chroot) and Debian's debootstrap package.
#   deploy/images/base.sh OUT.tar            (MEMGEN_DEBIAN_MIRROR overrides http://deb.debian.org/debian)
set -euo pipefail
out="${1:?usage: deploy/images/base.sh OUT.tar}"
mirror="${MEMGEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
fail() { echo "base.sh: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || fail "debootstrap needs root (fix: run as root, or give ./memgen images --base-image a registry image such as eclipse-temurin:17-jre)"
command -v debootstrap >/dev/null 2>&1 || fail "debootstrap is missing (fix: apt-get install debootstrap)"

work="$(mktemp -d "${TMPDIR:-/tmp}/memgen-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
echo "base.sh: debootstrap $suite (minbase + openjdk-17-jre-headless) from $mirror ..." >&2
if ! debootstrap --variant=minbase --include=openjdk-17-jre-headless,ca-certificates "$suite" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1; then
  tail -n 5 "$work/debootstrap.log" >&2
  fail "debootstrap failed (the lines above; fix: check that $mirror is reachable, or set MEMGEN_DEBIAN_MIRROR)"
fi

# The services' user: uid 185 as in the Quarkus images, with a home for DJL's native-library cache (~/.djl.ai).
chroot "$rootfs" useradd --system --uid 185 --user-group --create-home --home-dir /home/memgen --shell /usr/sbin/nologin memgen
# Its state directories, owned by it: a volume mounted there (compose's named volumes) starts with this ownership.
install -d -o 185 -g 185 "$rootfs"/var/lib/memgen "$rootfs"/var/lib/memgen/adapters "$rootfs"/var/lib/memgen/spool \
  "$rootfs"/var/lib/memgen/trainer "$rootfs"/var/cache/memgen
# What a runtime image does not need: package caches and lists, documentation, logs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log \
  "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history
# A container runtime mounts its own /dev and /proc; debootstrap's device nodes are left out of the layer.
rm -rf "$rootfs"/dev/* "$rootfs"/proc/*

jdk=/usr/lib/jvm/java-17-openjdk-amd64
[ -x "$rootfs$jdk/bin/java" ] || fail "the image has no $jdk/bin/java (debootstrap's log: $work/debootstrap.log)"
java_version="$(chroot "$rootfs" dpkg-query -W -f '${Version}' openjdk-17-jre-headless)"

# One layer, its entries in a fixed order with fixed times, so that the same files give the same digest.
tar --sort=name --mtime=@0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux",
 "config":{"Env":["PATH=$jdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","JAVA_HOME=$jdk",
                  "LANG=C.UTF-8","HOME=/home/memgen"],
           "User":"185","WorkingDir":"/home/memgen",
           "Labels":{"org.opencontainers.image.description":"Debian $suite minbase + openjdk-17-jre-headless $java_version (deploy/images/base.sh)"}},
 "rootfs":{"type":"layers","diff_ids":["$diff_id"]},
 "history":[{"created":"1970-01-01T00:00:00Z","created_by":"deploy/images/base.sh: debootstrap --variant=minbase $suite + openjdk-17-jre-headless $java_version"}]}
EOF
echo '[{"Config":"config.json","RepoTags":["memgen/base:bookworm-jre17"],"Layers":["layer.tar"]}]' >"$work/manifest.json"
mkdir -p "$(dirname "$out")"
tar --mtime=@0 -C "$work" -cf "$out.partial" manifest.json config.json layer.tar
mv -f "$out.partial" "$out"
echo "base.sh: wrote $out ($(du -h "$out" | cut -f1), openjdk $java_version, layer $diff_id)" >&2
