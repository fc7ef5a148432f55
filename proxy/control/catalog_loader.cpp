#include "proxy/control/catalog_loader.hpp"

#include <cmath>

#include "proxy/net/log.hpp"

namespace pgmux::proxy {

namespace {
constexpr double kLoadTimeout = 5;  // seconds; the query reads pg_proc and every user view's definition
}

CatalogLoader::CatalogLoader(uv_loop_t* loop, FunctionCatalogs& catalogs, TargetFor target_for)
    : loop_(loop), catalogs_(catalogs), target_for_(std::move(target_for)), timer_(make_uv_handle<uv_timer_t>(this)) {
  timer_->init(loop_);
}

CatalogLoader::~CatalogLoader() = default;

void CatalogLoader::start(double period_seconds) {
  stopped_ = false;
  const auto period_ms = static_cast<uint64_t>(std::llround(period_seconds * 1000));
  uv_timer_start(timer_->get(), on_tick, period_ms, period_ms);
}

void CatalogLoader::stop() {
  stopped_ = true;
  uv_timer_stop(timer_->get());
  databases_.clear();
}

void CatalogLoader::on_tick(uv_timer_t* timer) {
  auto* self = UvTimer<CatalogLoader>::owner_of(timer);
  if (self == nullptr) return;
  for (const std::shared_ptr<CatalogSlot>& slot : self->catalogs_.slots()) self->load(slot);
}

void CatalogLoader::load(const std::shared_ptr<CatalogSlot>& slot) {
  if (stopped_) return;
  Database& db = databases_[slot->database];
  db.slot = slot;
  if (db.connection) {
    db.again = true;
    return;
  }
  begin(db);
}

void CatalogLoader::begin(Database& db) {
  db.again = false;
  db.rows = routing::FunctionCatalogBuilder();
  db.started_after = db.slot->changes.load();  // what committed before now is in what this load reads
  Source source = target_for_(db.slot->database);
  db.standbys_read = !source.primary && source.standbys_read;
  if (!source.primary) {
    finish(db, false, "no primary");
    return;
  }
  db.connection = std::make_unique<PgQueryConnection>(loop_, std::move(*source.primary), "pgmux-catalog");
  db.connection->start(
      routing::function_catalog_query(), kLoadTimeout,
      [&db](const PGresult* result) -> std::string {
        if (PQresultStatus(result) != PGRES_TUPLES_OK || PQnfields(result) != 2) {
          return std::string("unexpected catalog result ") + PQresStatus(PQresultStatus(result));
        }
        for (int row = 0; row < PQntuples(result); ++row) {
          db.rows.add_row(PQgetvalue(result, row, 0), PQgetvalue(result, row, 1));
        }
        return "";
      },
      [this, &db](bool ok, const std::string& error) { finish(db, ok, error); });
}

// Publishes a loaded catalog (a failed load keeps the last one), then marks the changes it covers: clients
// stop sending their reads to the primary for them, loaded or not, so a database whose catalog cannot be read
// is not kept off the standbys. A load that found no primary covers them only when standbys serve reads: until
// then a read can only wait for the primary anyway, and at startup, between the prober finding the primary and
// the load that follows, a read must not reach a standby judged without the catalog (an unlogged table, a
// volatile or session-changing function).
void CatalogLoader::finish(Database& db, bool ok, const std::string& error) {
  CatalogSlot& slot = *db.slot;
  const bool without_primary = !ok && !db.connection;  // none known yet: loaded again once there is (Control)
  if (ok) {
    auto catalog = std::make_shared<const routing::FunctionCatalog>(std::move(db.rows).build(++generation_));
    LOG_DEBUG("function catalog of database %s: %zu volatile function names, %zu views over them, %zu unlogged "
              "relations", escape_for_log(slot.database, 64).c_str(), catalog->function_count(),
              catalog->view_count(), catalog->unlogged_count());
    if (db.failing) LOG_INFO("function catalog of database %s loaded again", escape_for_log(slot.database, 64).c_str());
    db.failing = false;
    slot.snapshot.store(std::move(catalog), std::memory_order_release);
    slot.published.fetch_add(1, std::memory_order_acq_rel);
  } else if (without_primary) {
    LOG_DEBUG("function catalog of database %s: no primary to read it from yet",
              escape_for_log(slot.database, 64).c_str());
  } else if (!db.failing) {
    LOG_WARN("cannot load the function catalog of database %s (reads calling functions it does not know of may "
             "reach a standby): %s",
             escape_for_log(slot.database, 64).c_str(), escape_for_log(error, 1000).c_str());
    db.failing = true;
  }
  if (!without_primary || db.standbys_read) slot.covered.store(db.started_after, std::memory_order_release);
  // Deleting the connection here is allowed: this runs as its last step.
  db.connection.reset();
  if (db.again && !stopped_) begin(db);
}

}  // namespace pgmux::proxy
