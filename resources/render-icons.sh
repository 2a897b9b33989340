#!/usr/bin/env bash
# Renders the app icon's PNG sizes from the SVG (committed, so the build needs
# no SVG renderer). Run after editing icons/moe-studio.svg; needs librsvg2-bin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/icons"
for size in 48 128 256; do rsvg-convert -w "$size" -h "$size" moe-studio.svg -o "moe-studio-$size.png"; done
