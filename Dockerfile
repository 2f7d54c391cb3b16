# syntax=docker/dockerfile:1
# course-operator image: a static (musl) binary on distroless, running as the nonroot user.
#
#   docker build -t course-operator:dev .
#
# The build stage runs natively on the target platform (no cross C toolchain needed for
# ring), so `docker buildx build --platform linux/amd64,linux/arm64` works under emulation.

FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
# ring's C code is compiled with musl-gcc for the musl targets.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of
# the cached target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
    && cargo build --release --locked --bin course-operator --target "$target" \
    && cp "target/$target/release/course-operator" /course-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /course-operator /course-operator
# 65532:65532, the chart's runAsUser/runAsGroup.
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/course-operator"]
CMD ["run"]
