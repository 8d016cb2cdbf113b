#!/usr/bin/env bash
# Spark GPU discovery script (spark.executor.resource.gpu.discoveryScript): prints the GPUs this
# container sees as the JSON Spark expects, e.g. {"name": "gpu", "addresses": ["0","1"]}.
# Exits non-zero when nvidia-smi is missing or sees no GPU, so the executor fails loudly instead
# of registering without the GPU its task needs.
set -euo pipefail

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "getGpusResources.sh: nvidia-smi not found (is NVIDIA_DRIVER_CAPABILITIES=compute,utility set?)" >&2
  exit 1
fi

indices=$(nvidia-smi --query-gpu=index --format=csv,noheader | tr -d ' \r')
addresses=""
while IFS= read -r index; do
  [[ -z "$index" ]] && continue
  if ! [[ "$index" =~ ^[0-9]+$ ]]; then
    echo "getGpusResources.sh: unexpected GPU index from nvidia-smi: '$index'" >&2
    exit 1
  fi
  addresses+="${addresses:+,}\"$index\""
done <<< "$indices"

if [[ -z "$addresses" ]]; then
  echo "getGpusResources.sh: nvidia-smi lists no GPU" >&2
  exit 1
fi
printf '{"name": "gpu", "addresses": [%s]}\n' "$addresses"
