// FunctionCatalogs and CatalogReader: a database's slot asks for its first load, reads are "refreshing" until a
// load covers every committed catalog change, and readers pick up a published snapshot.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "proxy/control/function_catalogs.hpp"

using pgmux::proxy::CatalogChangeHold;
using pgmux::proxy::CatalogReader;
using pgmux::proxy::CatalogSlot;
using pgmux::proxy::FunctionCatalogs;
using pgmux::routing::FunctionCatalog;
using pgmux::routing::FunctionCatalogBuilder;

namespace {

// What the loader does at the end of a load that began after `started_after` changes.
void finish_load(CatalogSlot& slot, uint64_t started_after, uint64_t generation) {
  FunctionCatalogBuilder b;
  b.add_row("f", "write_audit");
  slot.snapshot.store(std::make_shared<const FunctionCatalog>(std::move(b).build(generation)));
  slot.published.fetch_add(1);
  slot.covered.store(started_after);
}

}  // namespace

TEST_CASE("function catalogs: one slot per database, the first use asks for a load") {
  FunctionCatalogs catalogs;
  std::vector<std::shared_ptr<CatalogSlot>> requested;
  catalogs.set_load_request([&](std::shared_ptr<CatalogSlot> slot) { requested.push_back(std::move(slot)); });
  const auto a = catalogs.slot_for("a");
  CHECK(catalogs.slot_for("a") == a);
  const auto b = catalogs.slot_for("b");
  REQUIRE(requested.size() == 2);
  CHECK(requested[0] == a);
  CHECK(requested[1] == b);
  CHECK(a->database == "a");
  CHECK(catalogs.slots().size() == 2);
}

TEST_CASE("catalog reader: refreshing until a load covers the changes, then the new snapshot") {
  FunctionCatalogs catalogs;
  int requests = 0;
  catalogs.set_load_request([&](std::shared_ptr<CatalogSlot>) { ++requests; });
  CatalogReader reader(catalogs.slot_for("db"));
  CHECK(reader.state().refreshing);  // the first load is not in yet
  CHECK(reader.state().catalog == nullptr);

  const uint64_t first = reader.slot()->changes.load();
  finish_load(*reader.slot(), first, 1);
  REQUIRE(reader.state().catalog != nullptr);
  CHECK_FALSE(reader.state().refreshing);
  CHECK(reader.state().catalog->generation() == 1);
  CHECK(reader.state().catalog->volatile_function("write_audit"));

  // DDL committed: refreshing at once (before the client hears ReadyForQuery), a load is asked for.
  catalogs.note_change(reader.slot());
  CHECK(requests == 2);
  CHECK(reader.state().refreshing);
  CHECK(reader.state().catalog->generation() == 1);  // the old one still answers for everything but reads
  // A load that began before the change does not end it.
  finish_load(*reader.slot(), first, 2);
  CHECK(reader.state().refreshing);
  CHECK(reader.state().catalog->generation() == 2);
  finish_load(*reader.slot(), reader.slot()->changes.load(), 3);
  CHECK_FALSE(reader.state().refreshing);
  CHECK(reader.state().catalog->generation() == 3);
  CHECK(reader.state().stamp() == 3);
}

TEST_CASE("catalog reader: without a loader nothing waits; an empty reader has no catalog") {
  FunctionCatalogs catalogs;
  CatalogReader reader(catalogs.slot_for("db"));
  CHECK_FALSE(reader.state().refreshing);
  CHECK(reader.state().catalog == nullptr);
  catalogs.note_change(reader.slot());
  CHECK_FALSE(reader.state().refreshing);
  CatalogReader none;
  CHECK_FALSE(none.state().refreshing);
  CHECK(none.state().stamp() == 0);
}

TEST_CASE("catalog change hold: reads wait from the DDL's sending until a load after its end") {
  FunctionCatalogs catalogs;
  int requests = 0;
  catalogs.set_load_request([&](std::shared_ptr<CatalogSlot>) { ++requests; });
  CatalogReader reader(catalogs.slot_for("db"));
  finish_load(*reader.slot(), reader.slot()->changes.load(), 1);
  REQUIRE_FALSE(reader.state().refreshing);
  {
    CatalogChangeHold hold;
    hold.begin(catalogs, reader.slot());
    hold.begin(catalogs, reader.slot());  // a second DDL of the same client: still one hold
    CHECK(hold.held());
    CHECK(reader.slot()->holds.load() == 1);
    CHECK(reader.state().refreshing);
    // A load that runs while the DDL may not have committed yet does not end it.
    finish_load(*reader.slot(), reader.slot()->changes.load(), 2);
    CHECK(reader.state().refreshing);
    CHECK(requests == 1);
    hold.end();
    CHECK_FALSE(hold.held());
    CHECK(requests == 2);
    CHECK(reader.slot()->holds.load() == 0);
    CHECK(reader.state().refreshing);  // counted: waits for a load that starts now
    finish_load(*reader.slot(), reader.slot()->changes.load(), 3);
    CHECK_FALSE(reader.state().refreshing);
    hold.begin(catalogs, reader.slot());
    CHECK(reader.state().refreshing);
  }  // the client went away with its DDL in flight: counted all the same
  CHECK(reader.slot()->holds.load() == 0);
  CHECK(requests == 3);
  CHECK(reader.state().refreshing);
}
