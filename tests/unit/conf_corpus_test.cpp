// Walks tests/data/config: every valid/*.json must load without diagnostics; every invalid/<name>.json
// must produce exactly the diagnostics listed (in order, one "<pointer>: <message>" per line) in
// invalid/<name>.expected.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "conf/loader.hpp"

namespace fs = std::filesystem;
using pgmux::conf::load_config_file;

namespace {

const fs::path kCorpus = fs::path(PGMUX_TEST_DATA) / "config";

std::vector<fs::path> json_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += "\n  " + l;
  return out;
}

}  // namespace

TEST_CASE("conf corpus: every valid config loads") {
  const auto files = json_files(kCorpus / "valid");
  CHECK(files.size() >= 3);
  for (const fs::path& file : files) {
    CAPTURE(file.filename().string());
    const auto result = load_config_file(file.string());
    std::vector<std::string> got;
    for (const auto& d : result.errors) got.push_back(d.to_string());
    INFO("diagnostics:" << joined(got));
    CHECK(result.ok());
    CHECK(result.errors.empty());
  }
}

TEST_CASE("conf corpus: every invalid config yields exactly its expected diagnostics") {
  const auto files = json_files(kCorpus / "invalid");
  CHECK(files.size() >= 20);
  for (const fs::path& file : files) {
    CAPTURE(file.filename().string());
    fs::path expected_path = file;
    expected_path.replace_extension(".expected");
    REQUIRE_MESSAGE(fs::exists(expected_path), "missing " << expected_path.string());
    const std::vector<std::string> expected = read_lines(expected_path);
    const auto result = load_config_file(file.string());
    std::vector<std::string> got;
    for (const auto& d : result.errors) got.push_back(d.to_string());
    INFO("expected:" << joined(expected));
    INFO("got:" << joined(got));
    CHECK_FALSE(result.ok());
    CHECK(got == expected);
  }
}
