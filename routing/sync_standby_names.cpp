#include "routing/sync_standby_names.hpp"

#include <algorithm>
#include <cctype>
#include <set>

namespace pgmux::routing {
namespace {

bool same_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  void skip_space() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }
  bool done() {
    skip_space();
    return at_ == text_.size();
  }
  bool take(char c) {
    skip_space();
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  // A keyword (FIRST, ANY) followed by something other than a name character.
  bool take_keyword(std::string_view word) {
    skip_space();
    const std::string_view rest = text_.substr(at_);
    if (rest.size() < word.size() || !same_ignoring_case(rest.substr(0, word.size()), word)) return false;
    if (rest.size() > word.size() && name_char(rest[word.size()])) return false;
    at_ += word.size();
    return true;
  }
  std::optional<int> number() {
    skip_space();
    size_t end = at_;
    while (end < text_.size() && std::isdigit(static_cast<unsigned char>(text_[end]))) ++end;
    if (end == at_ || end - at_ > 6) return std::nullopt;
    // A number followed by a name character is a name ("1standby"): not a count.
    if (end < text_.size() && name_char(text_[end])) return std::nullopt;
    const int n = std::stoi(std::string(text_.substr(at_, end - at_)));
    at_ = end;
    return n;
  }
  std::optional<std::string> name() {
    skip_space();
    if (at_ < text_.size() && text_[at_] == '*') {
      ++at_;
      return std::string("*");
    }
    if (at_ < text_.size() && text_[at_] == '"') return quoted();
    size_t end = at_;
    while (end < text_.size() && name_char(text_[end])) ++end;
    if (end == at_) return std::nullopt;
    std::string out(text_.substr(at_, end - at_));
    at_ = end;
    return out;
  }
  size_t position() const { return at_; }
  void rewind(size_t to) { at_ = to; }

 private:
  static bool name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || static_cast<unsigned char>(c) >= 0x80;
  }
  std::optional<std::string> quoted() {
    std::string out;
    for (++at_; at_ < text_.size(); ++at_) {
      if (text_[at_] != '"') {
        out += text_[at_];
      } else if (at_ + 1 < text_.size() && text_[at_ + 1] == '"') {
        out += '"';
        ++at_;
      } else {
        ++at_;
        return out;
      }
    }
    return std::nullopt;  // unterminated
  }

  std::string_view text_;
  size_t at_ = 0;
};

bool read_names(Reader& r, std::vector<std::string>& names) {
  do {
    auto name = r.name();
    if (!name) return false;
    names.push_back(std::move(*name));
  } while (r.take(','));
  return true;
}

}  // namespace

bool SyncStandbyNames::all_required() const {
  if (names.empty() || std::find(names.begin(), names.end(), "*") != names.end()) return false;
  std::set<std::string> distinct;
  for (const std::string& name : names) {
    std::string lower;
    for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    distinct.insert(lower);
  }
  // A name listed twice counts once: two entries for one standby do not make two standbys wait.
  return num_sync >= static_cast<int>(distinct.size());
}

bool SyncStandbyNames::lists(std::string_view application_name) const {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& name) { return same_ignoring_case(name, application_name); });
}

std::optional<SyncStandbyNames> parse_sync_standby_names(std::string_view text) {
  Reader r(text);
  if (r.done()) return std::nullopt;
  SyncStandbyNames out;
  const size_t start = r.position();
  const bool first = r.take_keyword("FIRST");
  out.quorum = !first && r.take_keyword("ANY");
  if (std::optional<int> n = r.number(); n && r.take('(')) {
    out.num_sync = *n;
    if (!read_names(r, out.names) || !r.take(')') || !r.done() || out.num_sync < 1) return std::nullopt;
    return out;
  }
  r.rewind(start);  // a bare list: FIRST 1
  out.quorum = false;
  out.num_sync = 1;
  if (!read_names(r, out.names) || !r.done()) return std::nullopt;
  return out;
}

bool names_commit_wait_setting(std::string_view sql) {
  constexpr std::string_view kNames[] = {"synchronous_commit", "client_min_messages"};
  for (const std::string_view name : kNames) {
    for (size_t at = 0; at + name.size() <= sql.size(); ++at) {
      if (same_ignoring_case(sql.substr(at, name.size()), name)) return true;
    }
  }
  return false;
}

}  // namespace pgmux::routing
