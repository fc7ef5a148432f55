#include "conf/loader.hpp"

#include <cerrno>
#include <cstring>
#include <cstdio>

#include "conf/config_json.hpp"
#include "conf/json_document.hpp"
#include "conf/validate.hpp"

namespace pgmux::conf {

std::string Diagnostic::to_string() const { return pointer + ": " + message; }

LoadResult parse_config(std::string_view json_text) {
  detail::Diagnostics diags;
  LoadResult result;
  std::optional<detail::Json> document = detail::parse_json_document(json_text, diags);
  if (document) {
    auto config = std::make_shared<Config>(detail::config_from_json(*document, diags));
    if (document->is_object()) detail::validate(*config, diags);
    if (diags.empty()) result.config = std::move(config);
  }
  result.errors = diags.take();
  return result;
}

LoadResult load_config_file(const std::string& path) {
  // stdio rather than ifstream: errno is reliable, and reading a directory fails (EISDIR) instead of
  // yielding an empty document.
  LoadResult result;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    result.errors.push_back(Diagnostic{"", "cannot read " + path + ": " + std::strerror(errno)});
    return result;
  }
  std::string text;
  char chunk[16384];
  size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, file)) > 0) text.append(chunk, n);
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) {
    result.errors.push_back(Diagnostic{"", "cannot read " + path + ": " + std::strerror(error)});
    return result;
  }
  return parse_config(text);
}

}  // namespace pgmux::conf
