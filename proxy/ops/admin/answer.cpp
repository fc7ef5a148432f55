#include "proxy/ops/admin/answer.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "protocol/error_response.hpp"
#include "proxy/net/log.hpp"

namespace pgmux::proxy::admin {

ResultSet& ResultSet::cell(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.6f", value);
  std::string s(text);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return cell(s);
}

namespace {

// A row whose text is valid UTF-8, as PostgreSQL's always is: a client's bytes (the user and database names of a
// login still in progress, never checked) get '?' for each byte that is not.
void build_valid_data_row(protocol::ByteVector& out, const std::vector<std::optional<std::string>>& row) {
  const auto invalid = [](const std::optional<std::string>& v) { return v && !is_valid_utf8(*v); };
  if (std::none_of(row.begin(), row.end(), invalid)) {
    protocol::build_data_row(out, row);
    return;
  }
  std::vector<std::optional<std::string>> valid = row;
  for (auto& value : valid) {
    if (invalid(value)) value = with_valid_utf8(*value);
  }
  protocol::build_data_row(out, valid);
}

}  // namespace

void encode(const Answer& answer, protocol::ByteVector& out) {
  for (const std::string& notice : answer.notices) {
    protocol::build_notice_response(out, "NOTICE", "00000", notice);
  }
  if (answer.error) {
    protocol::build_error_response(out, "ERROR", answer.error->sqlstate, with_valid_utf8(answer.error->message), {},
                                   with_valid_utf8(answer.error->hint));
  } else if (answer.results.empty()) {
    protocol::build_command_complete(out, answer.tag);
  } else {
    for (const ResultSet& r : answer.results) {
      protocol::build_row_description(out, r.columns);
      for (const auto& row : r.rows) build_valid_data_row(out, row);
      protocol::build_command_complete(out, r.tag.empty() ? "SHOW" : r.tag);
    }
  }
  protocol::build_ready_for_query(out, 'I');
}

std::string format_time(double unix_seconds) {
  if (unix_seconds <= 0) return "";
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
  return text;
}

}  // namespace pgmux::proxy::admin
