#!/usr/bin/env bash
# Make Fashion-MNIST available for the demo: Debian's package where apt exists, else say how.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ] || [ -n "${SYNCCP_DATA:-}" ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "get-data: installing Debian's dataset-fashion-mnist"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  echo "get-data: no apt-get here; synccp will download Fashion-MNIST into ~/.cache/synccp if it can," \
       "or set SYNCCP_DATA to a folder holding the four *-ubyte.gz files" >&2
fi
