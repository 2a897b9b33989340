// moe-studio: the desktop app's entry point (everything else is in ui/).
#include "studio_app.h"

int main(int argc, char** argv) { return moe::ui::runStudio(argc, argv); }
