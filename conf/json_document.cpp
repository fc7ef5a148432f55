#include "conf/json_document.hpp"

#include <set>
#include <string>

namespace pgmux::conf::detail {
namespace {

// Follows the parser's events to know the JSON pointer of the current container, so a repeated key can be
// reported where it sits. Arrays count their elements; objects remember their keys.
class DuplicateKeyWatcher {
 public:
  explicit DuplicateKeyWatcher(Diagnostics& diags) : diags_(diags) {}

  bool on_event(nlohmann::detail::parse_event_t event, const Json& parsed) {
    using Event = nlohmann::detail::parse_event_t;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        frames_.push_back(Frame{event == Event::array_start, 0, {}, {}, child_token()});
        break;
      case Event::object_end:
      case Event::array_end:
        if (!frames_.empty()) frames_.pop_back();
        element_done();
        break;
      case Event::key: {
        if (frames_.empty()) break;
        Frame& top = frames_.back();
        top.current_key = parsed.get<std::string>();
        if (!top.keys.insert(top.current_key).second) {
          diags_.add(child_pointer(container_pointer(), top.current_key), "duplicate key");
        }
        break;
      }
      case Event::value:
        element_done();
        break;
    }
    return true;  // keep everything
  }

 private:
  struct Frame {
    bool is_array;
    size_t next_index;
    std::string current_key;
    std::set<std::string> keys;
    std::string token;  // this container's pointer segment within its parent, already escaped
  };

  // Pointer segment of the value about to start inside the current container.
  std::string child_token() const {
    if (frames_.empty()) return "";
    const Frame& top = frames_.back();
    return top.is_array ? child_pointer("", top.next_index) : child_pointer("", top.current_key);
  }

  std::string container_pointer() const {
    std::string out;
    for (const Frame& f : frames_) out += f.token;
    return out;
  }

  void element_done() {
    if (!frames_.empty() && frames_.back().is_array) ++frames_.back().next_index;
  }

  Diagnostics& diags_;
  std::vector<Frame> frames_;
};

}  // namespace

std::optional<Json> parse_json_document(std::string_view text, Diagnostics& diags) {
  Diagnostics duplicates;
  DuplicateKeyWatcher watcher(duplicates);
  Json::parser_callback_t callback = [&watcher](int /*depth*/, nlohmann::detail::parse_event_t event,
                                                Json& parsed) { return watcher.on_event(event, parsed); };
  try {
    Json document = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                                /*ignore_comments=*/true);
    for (Diagnostic& d : duplicates.take()) diags.add(std::move(d.pointer), std::move(d.message));
    return document;
  } catch (const Json::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 3, column 5: ..."; keep the sentence.
    std::string message = e.what();
    const size_t bracket = message.find("] ");
    if (message.starts_with("[json.exception.") && bracket != std::string::npos) message.erase(0, bracket + 2);
    if (!message.starts_with("parse error")) message = "parse error: " + message;  // e.g. number overflow
    diags.add("", message);
    return std::nullopt;
  }
}

}  // namespace pgmux::conf::detail
