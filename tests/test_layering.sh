#!/usr/bin/env bash
# The layering rules, read from the sources: the engine includes no Qt, the
# UI and the apps include no Vulkan header and call no Vulkan function (they
# hold the engine's vk::Context, nothing below it), and no source file under
# engine/, ui/ or app/ includes a header of a layer above it.
#   test_layering.sh SOURCE_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
status=0
fail() { echo "test_layering: FAIL: $*" >&2; status=1; }

if hits=$(grep -rnE '#include *[<"](Q[A-Za-z]*|qt[^/]*/)' "$src/engine" "$src/app/cli"); then
  fail "Qt in the engine or moe-cli:"$'\n'"$hits"
fi
if hits=$(grep -rnE '#include *[<"]vulkan/|\bvk[A-Z][A-Za-z]+\(' "$src/ui" "$src/app"); then
  fail "Vulkan in the UI or the apps:"$'\n'"$hits"
fi
if hits=$(grep -rnE '#include *"(\.\./)*(ui|app)/' "$src/engine"); then
  fail "the engine includes the UI or the apps:"$'\n'"$hits"
fi
# The check itself must see the sources it judges.
[ -f "$src/engine/src/session.cpp" ] && [ -f "$src/ui/chat_worker.cpp" ] || fail "sources not found under $src"
[ $status -eq 0 ] && echo "test_layering: engine free of Qt, UI and apps free of Vulkan"
exit $status
