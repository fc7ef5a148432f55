// CHECK CONSISTENCY's pure parts: reading a table's sum as the summing query returns it, and comparing each
// standby's row with the primary's for the same table.
#include <doctest/doctest.h>

#include "proxy/control/consistency_check.hpp"

using namespace pgmux::proxy;

namespace {

ConsistencyRow row(std::string table, std::string backend, std::string role, std::optional<TableSum> sum) {
  ConsistencyRow r;
  r.table = std::move(table);
  r.backend = std::move(backend);
  r.role = std::move(role);
  r.sum = sum;
  return r;
}

}  // namespace

TEST_CASE("consistency: table sums as the query writes them") {
  auto sum = parse_table_sum("100000 175155103882");
  REQUIRE(sum);
  CHECK(sum->rows == 100000);
  CHECK(sum->checksum == 175155103882);
  sum = parse_table_sum("3 -42");
  REQUIRE(sum);
  CHECK(sum->checksum == -42);
  CHECK_FALSE(parse_table_sum(""));
  CHECK_FALSE(parse_table_sum("12"));
  CHECK_FALSE(parse_table_sum("12 "));
  CHECK_FALSE(parse_table_sum("12 34x"));
  CHECK_FALSE(parse_table_sum("x 34"));
}

TEST_CASE("consistency: each standby against the primary's sum of the same table") {
  std::vector<ConsistencyRow> rows = {
      row("a", "p", "primary", TableSum{10, 5}),   row("a", "s1", "standby", TableSum{10, 5}),
      row("a", "s2", "standby", TableSum{10, 6}),  row("b", "p", "primary", TableSum{1, 1}),
      row("b", "s1", "standby", std::nullopt),     row("b", "s2", "standby", TableSum{1, 1}),
      row("c", "s1", "standby", TableSum{0, 0}),  // no primary row (it failed): nothing to match
  };
  CHECK(compare_table_sums(rows) == 3);
  CHECK(rows[0].matches);
  CHECK(rows[1].matches);
  CHECK_FALSE(rows[2].matches);  // same count, other checksum
  CHECK(rows[3].matches);
  CHECK_FALSE(rows[4].matches);  // could not be summed
  CHECK(rows[5].matches);
  CHECK_FALSE(rows[6].matches);
}
