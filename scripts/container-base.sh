#!/usr/bin/env bash
# Makes, on a builder that cannot pull them, the base images that deploy/docker/*.Dockerfile name in FROM. Each one that
# is already present or can be pulled is left to podman; only those neither present nor pullable are made, here:
#   debian:<12.x>-slim     debootstrap --variant=minbase bookworm from Debian's packages, trimmed as Debian's slim
#                          images are (no documentation, manual pages, locales or package lists)
#   node:<version>-bookworm  that image, plus python3, make and g++ (for node-gyp), this machine's Node binary (which
#                          must be <version>), its headers (npm_config_nodedir points node-gyp at them, as no headers can
#                          be downloaded either), its npm, and its CA bundle (NODE_EXTRA_CA_CERTS): the npm registry may
#                          be reached through a TLS proxy only this machine's bundle trusts
# They are tagged docker.io/library/<name>, the name the FROM lines resolve to, and labelled
# org.gatehouse.local-base=<what they were made from>; one so labelled is made again when this script or the machine's
# Node or npm changes. Images without the label (pulled ones) are never touched.
#
#   scripts/container-base.sh            (as root, from anywhere; needs podman and debootstrap)
#
# It ends by starting a container of the Debian image: exit 3, with podman's reason, when none can run here (the
# engine itself cannot, whatever the image); exit 1 when an image cannot be made.
# Where the real images can be pulled (any builder with access to Docker Hub), this script is never needed: it pulls
# and exits. docs/deployment.md, "Air-gapped builders", says more.
set -euo pipefail
cd "$(dirname "$0")/.."
script="$PWD/scripts/container-base.sh"

DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LABEL=org.gatehouse.local-base

fail() {
  echo "container-base.sh: $*" >&2
  exit 1
}

command -v podman >/dev/null || fail "podman is not installed (apt-get install podman runc)"

mapfile -t bases < <(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' deploy/docker/*.Dockerfile | sort -u)
[ ${#bases[@]} -gt 0 ] || fail "no FROM line found in deploy/docker/*.Dockerfile"

node_version="$(node --version 2>/dev/null || true)"
npm_root="$(npm root -g 2>/dev/null || true)"
npm_version="$(npm --version 2>/dev/null || true)"
# What a local image is made from: a change to any of it makes the images again.
recipe="$(sha256sum "$script" | cut -c1-16)-node${node_version#v}-npm${npm_version}"

qualified() { echo "docker.io/library/$1"; }

debian_tag() {
  for base in "${bases[@]}"; do
    case "$base" in debian:*-slim) echo "$base" && return ;; esac
  done
}

# Whether podman can start a container at all (runtime, cgroups, namespaces, overlay), on the Debian image.
check_runs() {
  local out
  if ! out="$(podman run --rm --network none "$(qualified "$1")" true 2>&1)"; then
    echo "container-base.sh: containers cannot run here: podman run $1 failed: $out" >&2
    exit 3
  fi
}

label_of() {
  podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$(qualified "$1")" 2>/dev/null || true
}

# An image is wanted when it is absent, or was made here from another recipe.
wanted=()
for base in "${bases[@]}"; do
  if podman image exists "$(qualified "$base")"; then
    made_from="$(label_of "$base")"
    if [ -z "$made_from" ] || [ "$made_from" = "<no value>" ] || [ "$made_from" = "$recipe" ]; then
      echo "container-base.sh: $base is present"
      continue
    fi
    echo "container-base.sh: $base was made here from an earlier recipe ($made_from): making it again"
    wanted+=("$base")
  elif podman pull -q "$(qualified "$base")" >/dev/null 2>&1; then
    echo "container-base.sh: $base pulled"
  else
    echo "container-base.sh: $base cannot be pulled: making it here"
    wanted+=("$base")
  fi
done
if [ ${#wanted[@]} -eq 0 ]; then
  [ -z "$(debian_tag)" ] || check_runs "$(debian_tag)"
  exit 0
fi

[ "$(id -u)" = 0 ] || fail "debootstrap and podman import need root (uid $(id -u) here)"
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"

debian_base=""
node_base=""
for base in "${wanted[@]}"; do
  case "$base" in
    debian:12.*-slim | debian:12-slim | debian:bookworm-slim) debian_base="$base" ;;
    node:*-bookworm)
      node_base="$base"
      want="v$(echo "$base" | sed 's/^node:\(.*\)-bookworm$/\1/')"
      [ "$node_version" = "$want" ] ||
        fail "$base needs Node $want, and this machine's node is ${node_version:-missing}: install that version, or pull $base where a registry is reachable"
      [ -f /usr/include/node/node.h ] ||
        fail "$base needs Node's headers for node-gyp, and /usr/include/node/node.h is missing"
      [ -n "$npm_root" ] && [ -d "$npm_root/npm" ] || fail "$base needs npm, and npm root -g (${npm_root:-nothing}) has no npm"
      ;;
    *) fail "no recipe for the base image $base (named in a FROM line of deploy/docker/): pull it where a registry is reachable" ;;
  esac
done
# The node image is made on top of the Debian one, which the Dockerfiles name too.
debian="$(debian_tag)"
[ -z "$node_base" ] || [ -n "$debian" ] || fail "$node_base is made on a debian:12.x-slim image, and no FROM line names one"

work="$(mktemp -d /var/tmp/gatehouse-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

# Trimmed as Debian's slim images are: what a container never reads, and the package lists apt-get update fetches.
slim() {
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*.log
}

# One Debian tree serves both images: imported as it is for the Debian one, then grown into the node one.
if [ -n "$debian_base" ] || [ -n "$node_base" ]; then
  echo "container-base.sh: debootstrap --variant=minbase bookworm ($DEBIAN_MIRROR)"
  debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    fail "debootstrap failed; its log: $(tail -5 "$work/debootstrap.log")"
  slim
fi

if [ -n "$debian_base" ]; then
  # Without the builder's resolv.conf: podman gives each container its own.
  tar -C "$root" --exclude ./etc/resolv.conf -c . |
    podman import -q --change "LABEL $LABEL=$recipe" --change 'CMD ["bash"]' - "$(qualified "$debian_base")" >/dev/null
  echo "container-base.sh: made $debian_base"
fi

[ -z "$debian" ] || check_runs "$debian"

if [ -n "$node_base" ]; then
  echo "container-base.sh: making $node_base (Debian's python3, make and g++; this machine's Node $node_version and npm $npm_version)"
  # --force-unsafe-io: no fsync per file, the tree is thrown away if this fails.
  chroot "$root" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-unsafe-io python3 make g++' \
    >"$work/apt.log" 2>&1 || fail "installing python3, make and g++ in the Debian tree failed; its log: $(tail -10 "$work/apt.log")"
  slim
  install -D -m 0755 "$(command -v node)" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/include" "$root/usr/local/lib/node_modules"
  cp -a /usr/include/node "$root/usr/local/include/node"
  cp -a "$npm_root/npm" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  tar -C "$root" --exclude ./etc/resolv.conf -c . |
    podman import -q --change "LABEL $LABEL=$recipe" --change 'CMD ["node"]' \
      --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' --change 'ENV npm_config_nodedir=/usr/local' \
      - "$(qualified "$node_base")" >/dev/null
  echo "container-base.sh: made $node_base"
fi
