# tschsensor: a static binary in an empty image.
#
#   docker build -t tschsensor .
#   docker run --rm -v "$PWD/pcaps:/pcaps:ro" tschsensor replay /pcaps/impacket-atexec-smb2.pcap
#   docker run --rm --network host --cap-add NET_RAW --cap-add NET_ADMIN tschsensor run -i eth0
#
# Live capture needs the host's network namespace and CAP_NET_RAW (plus
# CAP_NET_ADMIN for promiscuous mode on some kernels); the user stays
# unprivileged: the capabilities come from the runtime's --cap-add, which
# a non-root user only holds if they are ambient. Without them, run it as
# `--user 0` or use the systemd unit in deploy/.

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
