#!/bin/sh
# container-test.sh: build the runtime image of the Dockerfile (FROM scratch,
# static binary, user 65532, pcaps/) with buildah, without pulling anything:
# the binary is built here and copied into an empty image. Then `podman
# run` replays a bundled capture in it and the JSON output is checked.
#
# Docker's engine does not run everywhere; buildah and podman do, rootless
# or as root, with vfs storage and chroot isolation. When they cannot run,
# the script says why and exits 0 (skipped), unless STRICT=1.
#
#   apt-get install -y buildah podman
#   scripts/container-test.sh
set -eu

cd "$(dirname "$0")/.."
skip() {
	echo "container-test: SKIP: $*" >&2
	[ "${STRICT:-0}" = 1 ] && exit 1
	exit 0
}
for tool in buildah podman go; do
	command -v "$tool" >/dev/null 2>&1 || skip "$tool not installed (apt-get install -y buildah podman)"
done

work=$(mktemp -d /tmp/tschsensor-ctr.XXXXXX)
image=localhost/tschsensor:container-test
# Private storage: nothing touches the host's image store, and the vfs
# driver needs no overlay or fuse support.
store="--root $work/storage --runroot $work/run --storage-driver vfs"
ctr=""
cleanup() {
	[ -n "$ctr" ] && buildah $store rm "$ctr" >/dev/null 2>&1 || true
	buildah $store rmi -f "$image" >/dev/null 2>&1 || true
	chmod -R u+w "$work" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
export BUILDAH_ISOLATION=chroot

echo "container-test: building the static binary"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=container-test" -o "$work/tschsensor" ./cmd/tschsensor
if command -v file >/dev/null 2>&1; then
	file "$work/tschsensor" | grep -q "statically linked" || { echo "container-test: binary is not static" >&2; exit 1; }
fi

# The capture to replay: one bundled in pcaps/, else one from the shared
# corpus mounted as a volume (never copied into the image).
capture=$(ls pcaps/*.pcap 2>/dev/null | head -n 1 || true)
volume=""
if [ -n "$capture" ]; then
	incap=/pcaps/$(basename "$capture")
else
	shared=$(cd .. && pwd)/shared/pcaps
	[ -f "$shared/A_hangchuanin__atexec.pcapng" ] || skip "no capture in pcaps/ and no ../shared/pcaps"
	volume="-v $shared:/shared:ro"
	incap=/shared/A_hangchuanin__atexec.pcapng
fi

echo "container-test: assembling $image from scratch"
ctr=$(buildah $store from scratch 2>"$work/err") || skip "buildah cannot run here: $(cat "$work/err")"
buildah $store copy --chmod 0755 "$ctr" "$work/tschsensor" /tschsensor >/dev/null
if ls pcaps/*.pcap >/dev/null 2>&1; then
	buildah $store copy "$ctr" pcaps/*.pcap /pcaps/ >/dev/null
fi
mkdir -p "$work/spool"
buildah $store copy --chown 65532:65532 "$ctr" "$work/spool" /var/lib/tschsensor >/dev/null
buildah $store config --user 65532:65532 --entrypoint '["/tschsensor"]' --cmd '--help' \
	--env TSCHSENSOR_SPOOL_DIR=/var/lib/tschsensor --env TSCHSENSOR_OBSERVER=tschsensor \
	--label org.opencontainers.image.title=tschsensor "$ctr" >/dev/null
buildah $store commit --quiet "$ctr" "$image" >/dev/null 2>"$work/err" || skip "buildah commit failed: $(cat "$work/err")"

echo "container-test: podman run $image replay $incap"
# --network none: replay needs no network. cgroupfs and file events avoid
# needing systemd on the host. Sandboxed hosts refuse some of what the
# runtimes set up by default (rlimits above the caller's, hybrid cgroups),
# so a few configurations are tried in turn; the first that starts wins.
ran=""
for opts in "" \
	"--ulimit nofile=1024:1024 --ulimit nproc=1024:1024" \
	"--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"; do
	case "$opts" in *runc*) command -v runc >/dev/null 2>&1 || continue ;; esac
	if podman $store --cgroup-manager cgroupfs --events-backend file run --rm --network none $opts $volume \
		"$image" replay --quiet "$incap" >"$work/out.json" 2>"$work/err"; then
		ran="podman run ${opts:-(defaults)}"
		break
	fi
	# Only an OCI runtime refusing to start is worth another try; the
	# sensor failing inside the container is a failure.
	grep -q "OCI" "$work/err" || break
done
if [ -z "$ran" ]; then
	if grep -q "OCI" "$work/err"; then
		skip "podman cannot start containers here: $(head -c 600 "$work/err")"
	fi
	echo "container-test: FAIL: replay in the container failed:" >&2
	cat "$work/err" >&2
	exit 1
fi
echo "container-test: ran with $ran"

# Every line is JSON; there is at least one call event; the image runs as
# the unprivileged user.
python3 - "$work/out.json" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
evs = [json.loads(l) for l in lines]
calls = [e for e in evs if e["event"]["kind"] == "event"]
alerts = [e for e in evs if e["event"]["kind"] == "alert"]
if not calls:
    sys.exit("container-test: FAIL: no call events in the container's output")
print("container-test: %d events, %d alerts, actions: %s" % (len(calls), len(alerts), sorted({e["event"].get("action", "") for e in calls})))
PY
user=$(podman $store image inspect --format '{{.Config.User}}' "$image")
[ "$user" = "65532:65532" ] || { echo "container-test: FAIL: image user is $user" >&2; exit 1; }
size=$(podman $store image inspect --format '{{.Size}}' "$image")
echo "container-test: PASS (image user $user, $size bytes)"
