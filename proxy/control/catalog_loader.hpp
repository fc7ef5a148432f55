// Loads the function catalogs of FunctionCatalogs from the primary, on the control loop: a database's first
// load when a client first uses it, again when catalog DDL committed through pgmux, and every
// routing.function_catalog_refresh seconds. One load per database at a time; a request during a load runs
// another once it is done. Each load connects to the database on the current primary (as the health-check
// user) and disconnects afterwards, so no server connection stays open per database.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <uv.h>

#include "proxy/control/function_catalogs.hpp"
#include "proxy/control/pg_query_connection.hpp"
#include "proxy/net/uv_handle.hpp"

namespace pgmux::proxy {

class CatalogLoader {
 public:
  // Where a database's catalog is read now: the primary. Without one, whether standbys serve reads meanwhile.
  struct Source {
    std::optional<ProbeTarget> primary;
    bool standbys_read = false;
  };
  using TargetFor = std::function<Source(const std::string& database)>;

  CatalogLoader(uv_loop_t* loop, FunctionCatalogs& catalogs, TargetFor target_for);
  ~CatalogLoader();  // drops loads in flight; the libuv handles free themselves once closed
  CatalogLoader(const CatalogLoader&) = delete;
  CatalogLoader& operator=(const CatalogLoader&) = delete;

  void start(double period_seconds);  // the timed reload of every database; also a new period (reload)
  void stop();                        // no timed reloads, no new loads
  // Loads the slot's catalog now, or after the load in flight for its database.
  void load(const std::shared_ptr<CatalogSlot>& slot);

 private:
  struct Database {
    std::shared_ptr<CatalogSlot> slot;
    std::unique_ptr<PgQueryConnection> connection;  // set while a load runs
    routing::FunctionCatalogBuilder rows;
    uint64_t started_after = 0;  // the slot's change count when the load began
    bool again = false;          // asked for while loading: load once more afterwards
    bool failing = false;        // the last load failed (logged once until one succeeds)
    bool standbys_read = false;  // the load found no primary, and standbys serve reads
  };

  void begin(Database& db);
  void finish(Database& db, bool ok, const std::string& error);
  static void on_tick(uv_timer_t* timer);

  uv_loop_t* loop_;
  FunctionCatalogs& catalogs_;
  TargetFor target_for_;
  std::map<std::string, Database> databases_;
  UvHandlePtr<uv_timer_t, CatalogLoader> timer_;  // may outlive this object while it closes
  uint64_t generation_ = 0;
  bool stopped_ = false;
};

}  // namespace pgmux::proxy
