#!/usr/bin/env bash
# Placeholder until infra/ exists: the deployment issue replaces this with the checkov gate.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d infra ]; then echo "infra/ exists but no checkov gate is wired" >&2; exit 1; fi
echo "infra-check: no infra/ yet"
