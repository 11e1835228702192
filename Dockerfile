# tschsensor: a static binary in an empty image.
#
#   docker build -t tschsensor .
#   docker run --rm -v "$PWD/pcaps:/pcaps:ro" tschsensor replay /pcaps/impacket-atexec-smb2.pcap
#   docker run --rm --network host --user 0 --cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN \
#       tschsensor run -i eth0
#
# Replay runs as the unprivileged user 65532. Live capture needs the host's
# network namespace and CAP_NET_RAW (CAP_NET_ADMIN for promiscuous mode); a
# non-root user in a container only holds capabilities the runtime makes
# ambient, so live capture runs as uid 0 with every other capability dropped.
# Outside containers, deploy/tschsensor.service runs it as an unprivileged
# user with ambient capabilities.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tschsensor ./cmd/tschsensor \
 && mkdir -p /out/spool && chown 65532:65532 /out/spool

FROM scratch
COPY --from=build /out/tschsensor /tschsensor
# The demo captures and their golden events: `replay /pcaps/*.pcap`.
COPY pcaps/*.pcap pcaps/*.json /pcaps/
# The NATS spool needs a writable directory owned by the user.
COPY --from=build --chown=65532:65532 /out/spool /var/lib/tschsensor
ENV TSCHSENSOR_SPOOL_DIR=/var/lib/tschsensor \
    TSCHSENSOR_OBSERVER=tschsensor
USER 65532:65532
ENTRYPOINT ["/tschsensor"]
CMD ["--help"]
