# The operator image, for people with Docker (scripts/build-images.sh builds the same without one).
# docker build -f images/operator.Dockerfile -t cassandra-sink-operator:0.1.0 .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config zlib1g-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cassandra-sink-operator --bin cassandra-sink-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/lib/x86_64-linux-gnu/libssl.so.3 /usr/lib/x86_64-linux-gnu/libcrypto.so.3 /usr/lib/x86_64-linux-gnu/
COPY --from=build /lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/
COPY --from=build /src/target/release/cassandra-sink-operator /usr/local/bin/cassandra-sink-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cassandra-sink-operator"]
