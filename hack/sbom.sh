#!/usr/bin/env bash
# The image's SBOM (CycloneDX JSON) with trivy, offline: the image is saved from podman's storage to
# an archive and read from there, so no registry, daemon or vulnerability database is needed.
#   hack/sbom.sh IMAGE OUTPUT        (PODMAN and TRIVY override the tools under .tools/)
set -euo pipefail
image=${1:?usage: hack/sbom.sh IMAGE OUTPUT}
output=${2:?usage: hack/sbom.sh IMAGE OUTPUT}
here=$(cd "$(dirname "$0")/.." && pwd)
podman=${PODMAN:-$here/.tools/podman/bin/podman}
trivy=${TRIVY:-$here/.tools/container/venv/bin/trivy}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$podman" save --quiet --format docker-archive -o "$work/image.tar" "$image"
mkdir -p "$(dirname "$output")"
# --scanners license: packages and their licenses only; the vulnerability scanner would download
# its database first. The result goes to a temporary file so a failed run leaves no partial SBOM.
"$trivy" image --quiet --input "$work/image.tar" --format cyclonedx --scanners license \
  --cache-dir "$work/cache" --skip-db-update --offline-scan --output "$work/sbom.json"
mv "$work/sbom.json" "$output"
echo "SBOM of $image: $output"
