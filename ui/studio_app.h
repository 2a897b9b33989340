#pragma once
// The moe-studio program: the application object, command-line options and
// the main window. `--self-test` opens the window, lists the models and exits
// (0 when the scan finished); `--screenshot DIR` saves the main pages as PNGs
// after a short real chat.
namespace moe::ui {

int runStudio(int argc, char** argv);

} // namespace moe::ui
