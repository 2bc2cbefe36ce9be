// Transitional: region_reader.cc still pre-renders label text with this name. Delete this file
// once region_reader stops including it (labels are escaped by the exposition layer now).
#pragma once

#include <string>
#include <string_view>

#include "exposition_primitives.h"

namespace shmetrics::gateway::text {

inline void AppendLabelValue(std::string& out, std::string_view value) {
  AppendEscapedLabelValue(out, value);
}

}  // namespace shmetrics::gateway::text
