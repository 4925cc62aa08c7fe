# The api-consumer image: the job (the entrypoint) and node-sim, both fully
# static, on an empty base with CA certificates and a non-root user.
#
#   docker build -t api-consumer:0.1.0 . && minikube image load api-consumer:0.1.0
#   minikube image build -t api-consumer:0.1.0 .    # or built inside minikube
#
# The runtime stage takes everything from the builder stage's /rootfs, laid out
# by ci/image-rootfs.sh. CI builds the binaries on the host and swaps in that
# tree with `buildah bud --build-context builder=DIR` (see ci/chart-and-image.sh).

# Pinned toolchain (the one CI and rust-version in Cargo.toml are checked with)
# on Debian bookworm, whose glibc is linked into the binaries.
FROM docker.io/library/rust:1.95.0-bookworm AS builder
# A failing command anywhere in a pipe fails the build.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# crt-static links glibc into the binary, so nothing is needed at run time. It
# only applies with an explicit --target (build scripts and proc macros stay
# dynamic, as they must); the host's triple keeps arm64 builds working.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
    && cargo build --release --locked --target "$target" --bins \
    && ci/image-rootfs.sh "target/$target/release" /

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="api-consumer" \
      org.opencontainers.image.description="All-or-nothing creation and deletion of groups on every node of a cluster; includes node-sim, a fault-injecting reference node" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /rootfs/ /
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/api-consumer"]
