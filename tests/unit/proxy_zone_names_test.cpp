// zone_file_spelling: a time zone as PostgreSQL reports it, read from a zone directory (proxy/server/zone_names.*).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "proxy/server/zone_names.hpp"

using pgmux::proxy::zone_file_spelling;

namespace {

// A zone directory of its own: Europe/Paris, UTC and America/Argentina/Buenos_Aires as files.
struct ZoneDir {
  ZoneDir() {
    char pattern[] = "/tmp/pgmux-zones-XXXXXX";
    path = mkdtemp(pattern);
    mkdir((path + "/Europe").c_str(), 0755);
    mkdir((path + "/America").c_str(), 0755);
    mkdir((path + "/America/Argentina").c_str(), 0755);
    for (const char* file : {"/Europe/Paris", "/UTC", "/America/Argentina/Buenos_Aires"}) {
      std::ofstream(path + file) << "TZif";
    }
  }
  ~ZoneDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string path;
};

}  // namespace

TEST_CASE("zone_file_spelling: a zone named in any case comes back as its file is named") {
  ZoneDir zones;
  CHECK(zone_file_spelling("europe/paris", zones.path) == "Europe/Paris");
  CHECK(zone_file_spelling("EUROPE/PARIS", zones.path) == "Europe/Paris");
  CHECK(zone_file_spelling("Europe/Paris", zones.path) == "Europe/Paris");
  CHECK(zone_file_spelling("utc", zones.path) == "UTC");
  CHECK(zone_file_spelling("america/argentina/buenos_aires", zones.path) == "America/Argentina/Buenos_Aires");
}

TEST_CASE("zone_file_spelling: no answer for what is not a zone file there") {
  ZoneDir zones;
  CHECK_FALSE(zone_file_spelling("europe", zones.path));         // a directory
  CHECK_FALSE(zone_file_spelling("europe/berlin", zones.path));  // not there
  CHECK_FALSE(zone_file_spelling("+03", zones.path));            // an offset: PostgreSQL spells it <+03>-03
  CHECK_FALSE(zone_file_spelling("../etc/passwd", zones.path));  // nothing outside the directory is looked at
  CHECK_FALSE(zone_file_spelling("europe//paris", zones.path));
  CHECK_FALSE(zone_file_spelling("/europe/paris", zones.path));
  CHECK_FALSE(zone_file_spelling("", zones.path));
  CHECK_FALSE(zone_file_spelling("a/b/c/d/e", zones.path));  // more components than any zone has
  CHECK_FALSE(zone_file_spelling("europe/paris", zones.path + "/none"));
}
