// What an admin command produces: result sets (psql renders them as tables), a command tag, or an error with a
// hint. Pure data; encode() turns it into protocol messages ending in ReadyForQuery.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/backend_messages.hpp"
#include "protocol/bytes.hpp"

namespace pgmux::proxy::admin {

inline constexpr int32_t kText = 25;
inline constexpr int32_t kInt8 = 20;
inline constexpr int32_t kFloat8 = 701;
inline constexpr int32_t kBool = 16;

struct ResultSet {
  std::vector<protocol::ColumnSpec> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::string tag;  // "SHOW"; empty: "SHOW" is used

  ResultSet& column(std::string name, int32_t type = kText) {
    columns.push_back({std::move(name), type});
    return *this;
  }
  // Appends a row; cells are added with cell().
  ResultSet& row() {
    rows.emplace_back();
    return *this;
  }
  ResultSet& cell(std::string value) {
    rows.back().emplace_back(std::move(value));
    return *this;
  }
  ResultSet& cell(int64_t value) { return cell(std::to_string(value)); }
  ResultSet& cell(uint64_t value) { return cell(std::to_string(value)); }
  ResultSet& cell(int value) { return cell(static_cast<int64_t>(value)); }
  ResultSet& cell(double value);   // fixed, up to 6 decimals, trailing zeros trimmed
  ResultSet& cell(bool value) { return cell(std::string(value ? "t" : "f")); }
  ResultSet& cell(const char* value) { return cell(std::string(value)); }
  ResultSet& null_cell() {
    rows.back().emplace_back(std::nullopt);
    return *this;
  }
};

struct AdminError {
  std::string sqlstate;
  std::string message;
  std::string hint;
};

struct Answer {
  std::vector<ResultSet> results;
  std::string tag;                  // command tag when there is no result set ("PAUSE", "RELOAD", "SET")
  std::vector<std::string> notices;  // NoticeResponses before the result (e.g. what a RELOAD changed)
  std::optional<AdminError> error;
  bool later = false;  // nothing to send now: the handler answers through Context::reply (OnControl only)

  static Answer of(ResultSet r) {
    Answer a;
    a.results.push_back(std::move(r));
    return a;
  }
  static Answer done(std::string tag) {
    Answer a;
    a.tag = std::move(tag);
    return a;
  }
  static Answer deferred() {
    Answer a;
    a.later = true;
    return a;
  }
  static Answer fail(std::string sqlstate, std::string message, std::string hint = {}) {
    Answer a;
    a.error = AdminError{std::move(sqlstate), std::move(message), std::move(hint)};
    return a;
  }
};

// The messages for one answer, then ReadyForQuery('I').
void encode(const Answer& answer, protocol::ByteVector& out);

// "2026-11-22 16:02:23" (UTC) for a unix time; "" for 0.
std::string format_time(double unix_seconds);

}  // namespace pgmux::proxy::admin
