#include "moe/routing.h"

namespace moe {

const char* toString(RoutingMode m) {
    switch (m) {
    case RoutingMode::Token: return "token";
    case RoutingMode::Running: return "running";
    case RoutingMode::Sequence: return "sequence";
    case RoutingMode::Likelihood: return "likelihood";
    }
    return "?";
}

bool parseRoutingMode(const std::string& s, RoutingMode& out) {
    for (RoutingMode m : {RoutingMode::Token, RoutingMode::Running, RoutingMode::Sequence, RoutingMode::Likelihood})
        if (s == toString(m)) {
            out = m;
            return true;
        }
    return false;
}

} // namespace moe
