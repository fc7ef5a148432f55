#include "tests/soak/soak_log.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace pgmux::soak {
namespace {

// "2026-12-02 14:30:01.123 WARN  C-17 ...": the level is the word after the date and the time.
constexpr size_t kStampLength = 23;

// The line without its stamp, each run of digits folded to '#', cut to 110 characters.
std::string shape_of(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size() && out.size() < 110; ++i) {
    if (std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (out.empty() || out.back() != '#') out.push_back('#');
      continue;
    }
    out.push_back(text[i]);
  }
  return out;
}

bool crash_sign(const std::string& line) {
  for (const char* sign : {"Sanitizer", "terminate called", "Assertion", "runtime error:", "Segmentation",
                           "leak of"}) {
    if (line.find(sign) != std::string::npos) return true;
  }
  return false;
}

bool killed_backend_error(const std::string& text) {
  return text.find("the BEGIN pgmux sent ahead of a request failed: terminating connection due to administrator "
                   "command") != std::string::npos;
}

}  // namespace

LogSummary summarize_log(const std::string& log, size_t shapes_per_level) {
  LogSummary summary;
  std::map<std::string, std::map<std::string, size_t>> shapes;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (crash_sign(line) && summary.crash_lines.size() < 20) summary.crash_lines.push_back(line);
    std::string level = "OTHER";
    std::string rest = line;
    if (line.size() > kStampLength + 6 && line[4] == '-' && line[kStampLength] == ' ') {
      level = line.substr(kStampLength + 1, 5);
      level.erase(level.find_last_not_of(' ') + 1);
      rest = line.substr(kStampLength + 7);
    }
    ++summary.lines_per_level[level];
    if (level == "ERROR" && !killed_backend_error(rest)) {
      if (++summary.unexpected_errors <= 20) summary.unexpected_error_lines.push_back(line);
    }
    ++shapes[level][shape_of(rest)];
  }
  for (auto& [level, counts] : shapes) {
    std::vector<std::pair<std::string, size_t>> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    if (sorted.size() > shapes_per_level) sorted.resize(shapes_per_level);
    summary.top_shapes[level] = std::move(sorted);
  }
  return summary;
}

std::string format_log_summary(const LogSummary& summary) {
  std::ostringstream out;
  for (const auto& [level, count] : summary.lines_per_level) {
    out << "  " << level << ": " << count << " lines\n";
    for (const auto& [shape, n] : summary.top_shapes.at(level)) out << "    " << n << " x " << shape << "\n";
  }
  out << "  ERROR lines not caused by a killed backend: " << summary.unexpected_errors << "\n";
  for (const auto& line : summary.unexpected_error_lines) out << "  UNEXPECTED: " << line << "\n";
  for (const auto& line : summary.crash_lines) out << "  CRASH SIGN: " << line << "\n";
  return out.str();
}

}  // namespace pgmux::soak
