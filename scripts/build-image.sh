#!/usr/bin/env bash
# Builds the pgmux container image with podman without any container registry, then smoke-tests it.
#
#   scripts/build-image.sh [--dir DIR] [--tag TAG] [--rebuild-base] [--no-smoke | --no-build]
#
#  1. installs podman, runc and debootstrap from Debian's packages when they are missing;
#  2. debootstraps a minimal Debian 12 (bookworm) into DIR/rootfs and imports it as localhost/pgmux-base:bookworm
#     (kept for the next run; --rebuild-base makes it anew), so no FROM line pulls from a registry;
#  3. podman build --format docker (OCI format would drop the HEALTHCHECK) with BASE_IMAGE and RUNTIME_IMAGE set
#     to that image, tagged TAG (default localhost/pgmux:latest);
#  4. smoke tests: --version; --check of a mounted config (a valid one passes, a broken one fails); the container
#     on the host network, started before a PostgreSQL test cluster (tests/support/cluster.sh), is unhealthy, and
#     the image's own HEALTHCHECK turns healthy once the cluster is up; a query through it; a clean stop.
# --no-build skips 2 and 3 and smoke-tests TAG as it is; --no-smoke skips 4. The only network used is Debian's
# mirror (debootstrap and the apt-get steps of the Dockerfile).
#
# DIR defaults to build/image. Environment: IMAGE_BASEPORT (default 5433, the demo's ports: cluster on
# BASEPORT..BASEPORT+2, pgmux on BASEPORT+3, its metrics on BASEPORT+4), IMAGE_HEALTH_TIMEOUT (seconds, default
# 90), DEBIAN_MIRROR (default http://deb.debian.org/debian). podman itself honours STORAGE_DRIVER (e.g. vfs
# where overlay mounts are not allowed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

work_dir="$repo/build/image"
tag=localhost/pgmux:latest
base_image=localhost/pgmux-base:bookworm
rebuild_base=0
smoke=1
build=1
base_port=${IMAGE_BASEPORT:-5433}
health_timeout=${IMAGE_HEALTH_TIMEOUT:-90}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) work_dir=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --rebuild-base) rebuild_base=1; shift ;;
    --no-smoke) smoke=0; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build-image.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
if ! [[ $base_port =~ ^[0-9]+$ ]] || ((base_port < 1024 || base_port > 65529)); then
  echo "build-image.sh: bad IMAGE_BASEPORT '$base_port'" >&2
  exit 2
fi
mkdir -p "$work_dir"
work_dir=$(cd "$work_dir" && pwd)
cluster_dir="$work_dir/cluster"
container="pgmux-image-smoke-$$"
client_port=$((base_port + 3))
metrics_port=$((base_port + 4))

t_start=$SECONDS
t_step=$SECONDS
step() {  # prints how long the previous step took, then names the next one
  if [[ -n ${step_name:-} ]]; then
    echo "build-image.sh: -- $step_name: $((SECONDS - t_step)) s" >&2
  fi
  step_name=$1
  t_step=$SECONDS
  echo "build-image.sh: == $1" >&2
}
die() { echo "build-image.sh: FAIL: $*" >&2; exit 1; }

# Cleanup on every exit path, only of what this run started: the smoke container and the test cluster.
container_started=0
cluster_started=0
cleanup() {
  local rc=$?
  if [[ $container_started == 1 ]]; then
    podman rm -f -t 0 "$container" >/dev/null 2>&1 || true
  fi
  if [[ $cluster_started == 1 ]]; then
    # Its data goes once it is stopped; its logs are worth keeping after a failure only.
    if bash "$repo/tests/support/cluster.sh" stop "$cluster_dir" >/dev/null 2>&1 && [[ $rc == 0 ]]; then
      rm -rf "$cluster_dir"
    fi
  fi
  if [[ $rc == 0 ]]; then
    echo "build-image.sh: OK in $((SECONDS - t_start)) s: $tag" >&2
  else
    echo "build-image.sh: failed (exit $rc) after $((SECONDS - t_start)) s" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_tools() {
  local p missing=()
  for p in podman runc debootstrap; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}: run as root (podman build, debootstrap and the test cluster need it)"
  echo "build-image.sh: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Trims the fresh rootfs the way Debian's own -slim images are trimmed (no docs, man pages or translations, now
# or in packages installed later), empties apt's caches and points apt at the release, updates and security.
trim_rootfs() {  # ROOTFS
  local r=$1
  cat >"$r/etc/dpkg/dpkg.cfg.d/pgmux-slim" <<'EOF'
# Like Debian's -slim container images: a server image needs no documentation or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  rm -rf "$r/usr/share/man"/* "$r/usr/share/info"/* "$r/usr/share/locale"/* "$r/usr/share/lintian"/*
  rm -rf "$r/var/cache/apt"/*.bin "$r/var/cache/apt/archives"/*.deb "$r/var/lib/apt/lists"/*
  rm -f "$r/etc/apt/sources.list"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

make_base_image() {
  if [[ $rebuild_base == 0 ]] && podman image exists "$base_image"; then
    echo "build-image.sh: reusing $base_image (--rebuild-base makes it anew)" >&2
    return 0
  fi
  local rootfs="$work_dir/rootfs"
  rm -rf "$rootfs"
  nice debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work_dir/debootstrap.log" 2>&1 ||
    die "debootstrap failed; log: $work_dir/debootstrap.log"$'\n'"$(tail -n 20 "$work_dir/debootstrap.log")"
  trim_rootfs "$rootfs"
  tar --numeric-owner -C "$rootfs" -c . |
    podman import -q --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$base_image" >/dev/null
  rm -rf "$rootfs"
}

# Flags that podman run and build need on this host, found by trying them in order and kept explicit on each
# command (not written to containers.conf, which is the machine's). Without CAP_SYS_RESOURCE (containers, CI
# sandboxes) podman's default rlimits (nofile 1048576, nproc 4194304) exceed the hard limits and the runtime
# fails with "setrlimit ... Operation not permitted": pass what podman itself runs with (it caps nproc at
# pid_max). crun 1.8 refuses hosts with cgroup v1 and v2 mounted side by side ("cgroups in hybrid mode not
# supported"); runc runs there.
run_flags=()
probe_podman() {
  local nofile nproc pid_max out
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  pid_max=$(cat /proc/sys/kernel/pid_max)
  if [[ $nproc == unlimited ]] || ((nproc > pid_max)); then
    nproc=$pid_max
  fi
  [[ $nofile != unlimited ]] || nofile=1048576
  local ulimits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
  local -a candidates=("" "${ulimits[*]}" "--runtime runc ${ulimits[*]}")
  local flags
  for flags in "${candidates[@]}"; do
    read -r -a run_flags <<<"$flags"
    if out=$(podman run --rm "${run_flags[@]}" --entrypoint true "$base_image" 2>&1); then
      echo "build-image.sh: podman runs containers here with: ${flags:-no extra flags}" >&2
      return 0
    fi
    echo "build-image.sh: podman run ${flags:-(no extra flags)}: ${out##*$'\n'}" >&2
  done
  die "podman cannot start a container on this host (last error above)"
}

build_image() {
  # --network host: the apt-get steps reach Debian's mirror as the host does, without a bridge or NAT.
  # --pull=never: every FROM is the local base image; nothing is looked up in a registry.
  nice podman build "${run_flags[@]}" --network host --pull=never --format docker \
    --build-arg "BASE_IMAGE=$base_image" --build-arg "RUNTIME_IMAGE=$base_image" \
    -t "$tag" "$repo" >"$work_dir/build.log" 2>&1 ||
    die "podman build failed; log: $work_dir/build.log"$'\n'"$(tail -n 30 "$work_dir/build.log")"
  local health
  health=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$tag")
  [[ $health == *readyz* ]] || die "the image has no HEALTHCHECK on /readyz (got: $health); was --format docker lost?"
  local leftovers
  leftovers=$(podman run --rm "${run_flags[@]}" --no-healthcheck --entrypoint bash "$tag" -c \
    'find /var/lib/apt/lists /var/cache/apt -type f 2>/dev/null | wc -l')
  [[ $leftovers == 0 ]] || die "the image keeps $leftovers files in apt's caches"
  echo "build-image.sh: $tag: $(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=si)B," \
    "user $(podman image inspect --format '{{.Config.User}}' "$tag"), HEALTHCHECK kept, apt caches empty" >&2
}

write_smoke_config() {  # FILE
  cat >"$1" <<EOF
// Written by scripts/build-image.sh: the container on the host network in front of the test cluster.
{
  "listeners": [{"host": "127.0.0.1", "port": $client_port}],
  "workers": 1,
  "backends": [
    {"name": "primary", "host": "127.0.0.1", "port": $base_port},
    {"name": "standby1", "host": "127.0.0.1", "port": $((base_port + 1))},
    {"name": "standby2", "host": "127.0.0.1", "port": $((base_port + 2))}
  ],
  "users": [{"name": "app", "password": "app"}, {"name": "postgres", "password": "postgres"}],
  "databases": [{"name": "app", "backends": ["primary", "standby1", "standby2"], "pool_size": 4}],
  "routing": {"read_write_split": true},
  "health_check": {"period": 1, "timeout": 2, "max_retries": 1, "user": "postgres", "database": "postgres"},
  "metrics_listen": "127.0.0.1:$metrics_port"
}
EOF
  chmod 0644 "$1"
}

smoke_cli() {  # CONFIG
  local config=$1 out bad="$work_dir/smoke-bad.json"
  out=$(podman run --rm "${run_flags[@]}" --no-healthcheck "$tag" --version) || die "--version failed: $out"
  [[ $out =~ ^pgmux\ [0-9] ]] || die "--version printed '$out'"
  echo "build-image.sh: --version: $out" >&2
  out=$(podman run --rm "${run_flags[@]}" --no-healthcheck -v "$config:/etc/pgmux/pgmux.json:ro" "$tag" --check 2>&1) ||
    die "--check rejected the mounted config: $out"
  echo "build-image.sh: --check (mounted config): $out" >&2
  sed 's/"workers": 1,/"workers": 1, "no_such_key": 1,/' "$config" >"$bad"
  chmod 0644 "$bad"
  if out=$(podman run --rm "${run_flags[@]}" --no-healthcheck -v "$bad:/etc/pgmux/pgmux.json:ro" "$tag" --check 2>&1); then
    die "--check accepted a config with an unknown key: $out"
  fi
  [[ $out == *no_such_key* ]] || die "--check of a broken config did not name the bad key: $out"
  echo "build-image.sh: --check (broken config) fails as it should: ${out%%$'\n'*}" >&2
}

readyz_status() {  # prints the HTTP status of /readyz, or nothing while nobody listens
  local line
  line=$( (exec 3<>"/dev/tcp/127.0.0.1/$metrics_port" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 &&
    timeout 3 head -n 1 <&3) 2>/dev/null) || return 0
  line=${line#* }
  echo "${line%% *}"
}

# podman schedules HEALTHCHECKs through systemd timers, which a host without systemd (containers, CI) lacks: the
# smoke container gets no timer (--health-interval disable) and the checks run here with `podman healthcheck run`,
# which executes the image's own HEALTHCHECK command. One-shot containers get none (--no-healthcheck). podman 4.3
# still tries systemd for the smoke container and logs "unable to get systemd connection": that line is dropped.
health() {
  if podman healthcheck run "$container" >/dev/null 2>&1; then echo healthy; else echo unhealthy; fi
}

smoke_health() {  # CONFIG
  local config=$1 deadline status
  podman run -d --name "$container" "${run_flags[@]}" --network host --health-interval disable \
    -v "$config:/etc/pgmux/pgmux.json:ro" -e "PGMUX_HEALTH_PORT=$metrics_port" "$tag" >/dev/null \
    2> >(grep -v 'unable to get systemd connection' >&2)
  container_started=1
  deadline=$((SECONDS + 30))
  until [[ -n $(readyz_status) ]]; do
    ((SECONDS < deadline)) || die "no answer on 127.0.0.1:$metrics_port in 30 s; $(podman logs "$container" 2>&1 | tail -n 20)"
    sleep 0.5
  done
  status=$(readyz_status)
  [[ $status == 503 ]] || die "/readyz answered '$status' with no PostgreSQL running (want 503)"
  [[ $(health) == unhealthy ]] || die "the HEALTHCHECK did not report unhealthy with no PostgreSQL running"
  echo "build-image.sh: no cluster yet: /readyz 503, HEALTHCHECK unhealthy" >&2

  # Marked before the start: a start that fails half way leaves nodes running, and stop only stops this dir's.
  cluster_started=1
  bash "$repo/tests/support/cluster.sh" start "$cluster_dir" "$base_port" >&2
  local t0=$SECONDS
  deadline=$((SECONDS + health_timeout))
  until [[ $(health) == healthy ]]; do
    ((SECONDS < deadline)) || die "not healthy ${health_timeout}s after the cluster started (/readyz: $(readyz_status));" \
      "$(podman logs "$container" 2>&1 | tail -n 20)"
    sleep 1
  done
  echo "build-image.sh: cluster up: HEALTHCHECK healthy after $((SECONDS - t0)) s, /readyz $(readyz_status)" >&2
}

smoke_query_and_stop() {
  local psql=/usr/lib/postgresql/15/bin/psql out code deadline=$((SECONDS + 20))
  # Ready needs only the primary; the standbys may take another prober round before they serve reads.
  while :; do
    out=$(PGPASSWORD=app PGCONNECT_TIMEOUT=10 "$psql" -X -q -At -h 127.0.0.1 -p "$client_port" -U app -d app \
      -c 'SELECT pg_is_in_recovery()' -c 'BEGIN' -c 'SELECT pg_is_in_recovery()' -c 'COMMIT' 2>&1) ||
      die "query through the container failed: $out"
    [[ $out != $'t\nf' ]] || break
    ((SECONDS < deadline)) || die "through the container, want a read on a standby (t) and a transaction on" \
      "the primary (f), got: $out"
    sleep 1
  done
  echo "build-image.sh: through the container: a read on a standby, a transaction on the primary" >&2
  podman stop -t 20 "$container" >/dev/null 2>&1
  code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
  [[ $code == 0 ]] || die "pgmux exited $code on SIGTERM; $(podman logs "$container" 2>&1 | tail -n 20)"
  echo "build-image.sh: podman stop: pgmux exited 0" >&2
}

step "tools (podman, runc, debootstrap)"
install_tools
if [[ $build == 1 ]]; then
  step "base image $base_image (debootstrap bookworm minbase)"
  make_base_image
  step "podman flags for this host"
  probe_podman
  step "podman build --format docker -t $tag"
  build_image
else
  step "podman flags for this host"
  base_image=$tag
  probe_podman
fi
if [[ $smoke == 1 ]]; then
  step "smoke: --version and --check"
  config="$work_dir/smoke.json"
  write_smoke_config "$config"
  smoke_cli "$config"
  step "smoke: health turns ready with the cluster on 127.0.0.1:$base_port"
  smoke_health "$config"
  smoke_query_and_stop
fi
step "done"
