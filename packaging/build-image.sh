#!/usr/bin/env bash
# Build the ms-log-agent container image with buildah, optionally on a locally made base image,
# and optionally smoke-test it. Run from anywhere; the build context is the repository root.
#
#   packaging/build-image.sh [--tag IMAGE] [--local-base] [--smoke] [--format docker|oci]
#
#   --tag IMAGE     image to produce (default localhost/ms-log-agent:<version from agent/__init__.py>)
#   --local-base    when BASE_IMAGE is not in local storage, make it with debootstrap instead of
#                   pulling it (for machines that reach a Debian mirror but no container registry)
#   --smoke         after the build: `agent --version` and `agent check` as uid 10001 in the image
#
# Environment:
#   BASE_IMAGE      base for both stages (default docker.io/library/python:3.11-slim-bookworm;
#                   with --local-base and no BASE_IMAGE: localhost/ms-log-agent-base:bookworm)
#   CA_BUNDLE       host CA bundle lent to pip during the build, never stored in the image
#                   (default /etc/ssl/certs/ca-certificates.crt when it exists; CA_BUNDLE= to skip)
#   DEBIAN_MIRROR   mirror for debootstrap (default: the first bookworm mirror in /etc/apt)
#   ISOLATION       buildah isolation (default chroot: works where OCI runtimes cannot run)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/agent/__init__.py")"
tag="localhost/ms-log-agent:${version:-dev}"
local_base=0
smoke=0
format=docker   # HEALTHCHECK exists only in the docker image format; OCI would drop it
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --local-base) local_base=1; shift ;;
        --smoke) smoke=1; shift ;;
        --format) format="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "${BASE_IMAGE:-}" ]; then
    if [ "$local_base" = 1 ]; then
        BASE_IMAGE=localhost/ms-log-agent-base:bookworm
    else
        BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
    fi
fi
isolation="${ISOLATION:-chroot}"
ca_bundle="${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"

say() { printf 'build-image: %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { say "$1 is not installed ($2)"; exit 1; }; }
need buildah "apt-get install buildah"

# The Debian mirror apt already uses (deb822 .sources or one-line .list), for debootstrap.
apt_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN{RS=""} /(^|\n)Suites:[^\n]*[[:space:]]bookworm([[:space:]]|$)/ {
                 if (match($0, /(^|\n)URIs:[[:space:]]*[^[:space:]\n]+/)) {
                     s = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[[:space:]]*/, "", s); print s; exit } }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }'
}

# A minimal Debian bookworm with python3 + venv, in local storage as $BASE_IMAGE.
make_local_base() {
    need debootstrap "apt-get install debootstrap"
    local mirror="${DEBIAN_MIRROR:-$(apt_mirror | head -n1)}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    local work; work="$(mktemp -d /var/tmp/ms-log-agent-base.XXXXXX)"
    trap 'rm -rf "$work"' RETURN
    say "making $BASE_IMAGE with debootstrap from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
    local c; c="$(buildah from scratch)"
    buildah add --quiet "$c" "$work/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 "$c"
    buildah commit --quiet --rm "$c" "$BASE_IMAGE" >/dev/null
}

if ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    if [ "$local_base" = 1 ]; then
        make_local_base
    else
        say "$BASE_IMAGE is not in local storage; buildah will pull it (use --local-base without a registry)"
    fi
fi

args=(bud --isolation="$isolation" --format="$format" --layers=false
      --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$here/Containerfile" -t "$tag")
if [ -n "$ca_bundle" ] && [ -f "$ca_bundle" ]; then
    # Read-only, for the RUN steps only; the ARG is not part of the final image's environment.
    args+=(-v "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro"
           --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi
say "building $tag on $BASE_IMAGE"
start=$(date +%s)
buildah "${args[@]}" --quiet "$root" >/dev/null
say "built $tag in $(( $(date +%s) - start )) s"

if [ "$smoke" = 1 ]; then
    work="$(mktemp -d /var/tmp/ms-log-agent-smoke.XXXXXX)"
    c=""
    cleanup() { [ -n "$c" ] && buildah rm "$c" >/dev/null 2>&1; rm -rf "$work"; }
    trap cleanup EXIT
    mkdir -p "$work/etc" "$work/secrets"
    printf 'not-a-real-secret\n' >"$work/secrets/client-secret"
    cat >"$work/etc/agent.toml" <<'TOML'
[[tenants]]
id = "00000000-0000-0000-0000-000000000001"
client_id = "00000000-0000-0000-0000-000000000002"
client_secret_file = "/run/secrets/client-secret"

[store]
type = "local"
path = "/var/lib/ms-log-agent/archive"
TOML
    chmod -R a+rX "$work"
    c="$(buildah from --quiet "$tag")"
    run=(buildah run --isolation="$isolation" --user 10001:10001
         -v "$work/etc:/etc/ms-log-agent:ro" -v "$work/secrets:/run/secrets:ro" "$c" --)
    say "smoke: $("${run[@]}" agent --version)"
    say "smoke: $("${run[@]}" id -u):$("${run[@]}" id -g)"
    "${run[@]}" agent check --config /etc/ms-log-agent/agent.toml >&2
fi
printf '%s\n' "$tag"
