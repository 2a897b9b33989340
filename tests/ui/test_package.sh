#!/usr/bin/env bash
# Builds the Debian package with CPack, unpacks it into a temporary root and
# checks what a user gets: the files, a valid desktop entry and AppStream
# metainfo, computed Depends, and the installed moe-studio starting offscreen
# with --self-test and finding the installed demo models.
#   test_package.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "test_package: FAIL: $*" >&2; exit 1; }

for tool in dpkg-deb cpack desktop-file-validate appstreamcli; do
  command -v "$tool" >/dev/null || fail "$tool is missing (run packaging/install-deps.sh)"
done

(cd "$build" && cpack -G DEB -B "$work/out") >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$work"/out/*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || fail "cpack wrote no .deb"
echo "test_package: $(basename "$deb") ($(du -h "$deb" | cut -f1))"

depends=$(dpkg-deb -f "$deb" Depends)
echo "test_package: Depends: $depends"
for dep in mesa-vulkan-drivers libqt6widgets6 libvulkan1; do
  grep -q "$dep" <<<"$depends" || fail "Depends lacks $dep"
done

root="$work/root"
dpkg -x "$deb" "$root"
for f in usr/bin/moe-studio usr/bin/moe-cli \
         usr/share/applications/moe-studio.desktop \
         usr/share/metainfo/io.github.moestudio.MoEStudio.metainfo.xml \
         usr/share/icons/hicolor/scalable/apps/moe-studio.svg \
         usr/share/icons/hicolor/48x48/apps/moe-studio.png \
         usr/share/icons/hicolor/128x128/apps/moe-studio.png \
         usr/share/icons/hicolor/256x256/apps/moe-studio.png; do
  [ -f "$root/$f" ] || fail "$f is not in the package"
done
[ -x "$root/usr/bin/moe-studio" ] || fail "moe-studio is not executable"

models_src=${MOE_MODELS_DIR:-}
installed_models="$root/usr/share/moe-studio/models"
if [ -n "$models_src" ] && [ -f "$models_src/base/config.json" ]; then
  for f in base/config.json base/model.safetensors lora-code/adapter_config.json amoe.json; do
    [ -f "$installed_models/$f" ] || fail "demo model file $f is not in the package"
  done
  [ ! -e "$installed_models/reference" ] || fail "test references were packaged"
  [ ! -e "$installed_models/eval" ] || fail "eval texts were packaged"
fi

desktop-file-validate "$root/usr/share/applications/moe-studio.desktop" || fail "desktop-file-validate"
appstreamcli validate --no-net "$root/usr/share/metainfo/io.github.moestudio.MoEStudio.metainfo.xml" || fail "appstreamcli validate"

# The installed binary, isolated from the user's settings and the source checkout's models.
mkdir -p "$work/home" "$work/runtime"
chmod 700 "$work/runtime"
env -u MOE_MODELS_DIR HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_DATA_HOME="$work/home/.local/share" \
    XDG_RUNTIME_DIR="$work/runtime" HF_HUB_CACHE="$work/home/hub" QT_QPA_PLATFORM=offscreen \
    timeout 120 "$root/usr/bin/moe-studio" --self-test >"$work/self-test.log" 2>&1 || { cat "$work/self-test.log"; fail "moe-studio --self-test"; }
cat "$work/self-test.log"
if [ -d "$installed_models" ]; then
  grep -q "demo models from $installed_models" "$work/self-test.log" || fail "the installed demo models were not used"
  grep -Eq "self-test: [1-9][0-9]* models listed" "$work/self-test.log" || fail "no model listed"
fi
echo "test_package: PASS"
