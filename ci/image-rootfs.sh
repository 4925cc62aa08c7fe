#!/bin/sh
# Lays out the runtime image's file tree under OUT/rootfs: the two static
# binaries, the CA bundle, and the account table of a non-root user.
#
# Usage: ci/image-rootfs.sh BIN_DIR OUT
#
# The Dockerfile's builder stage runs it on the binaries it compiled, and CI on
# binaries built on the host (`--build-context builder=OUT`), so both images
# hold the same tree.
set -eu

bin_dir=$1
root=$2/rootfs

rm -rf "$root"
for bin in api-consumer node-sim; do
    # The runtime base is empty: a binary that needs a dynamic loader or shared
    # libraries would fail to start there, so refuse it here.
    if readelf --program-headers --wide "$bin_dir/$bin" | grep -q 'Requesting program interpreter'; then
        echo "image-rootfs: $bin_dir/$bin is dynamically linked; build with RUSTFLAGS='-C target-feature=+crt-static'" >&2
        exit 1
    fi
    install -D -m 0755 "$bin_dir/$bin" "$root/usr/local/bin/$bin"
done

# For https:// node URLs: the platform certificate store.
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

# The user is distroless's "nonroot" (65532), so that runAsNonRoot can check
# it and logs and files show a name.
mkdir -p "$root/etc"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$root/etc/group"
# glibc's resolver, linked in statically, still reads this: look names up in
# /etc/hosts first, then DNS (as Kubernetes and podman set them up).
printf '%s\n' 'hosts: files dns' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
