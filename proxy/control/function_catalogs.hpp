// The function catalogs of the server databases clients use (routing::FunctionCatalog), shared between the
// control loop, which loads them from the primary (catalog_loader.hpp), and the clients on every worker, which
// classify against them. A client reads its database's catalog with a few atomic loads per request and no lock.
//
// Freshness: DDL that may change functions or views (Classification::catalog_change) holds its database's slot
// from the moment it is sent (CatalogChangeHold) until its client has nothing owed outside a transaction; then
// it is counted as a change and a load is asked for, which records the count it started after. While a hold is
// open or a count is not covered by a finished load, the catalog is `refreshing` and reads go to the primary:
// a function created through pgmux and called at once, from any connection, is never judged on old data. (The
// hold starts before the DDL runs because the client may hear its ReadyForQuery before pgmux sees it.)
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "routing/function_catalog.hpp"

namespace pgmux::proxy {

struct CatalogSlot {
  explicit CatalogSlot(std::string server_database) : database(std::move(server_database)) {}

  const std::string database;
  std::atomic<std::shared_ptr<const routing::FunctionCatalog>> snapshot;  // null until a load succeeded
  std::atomic<uint64_t> published{0};  // bumped after each new snapshot
  std::atomic<uint64_t> changes{1};    // catalog changes committed through pgmux; the first load counts as one
  std::atomic<uint64_t> covered{0};    // the changes the last finished load (ok or not) started after
  std::atomic<int64_t> holds{0};       // catalog DDL sent and not yet counted (CatalogChangeHold)
  std::atomic<bool> first_wait_over{false};  // a request waited kFirstCatalogWait for the first load: no more do
};

// How long a request waits for its database's first catalog load (ClientConn::waits_for_first_catalog): the load
// reads pg_proc and every view's definition on the primary, once the prober has found it.
inline constexpr double kFirstCatalogWait = 2.0;

// What one client holds: its database's slot and the snapshot it last took from it.
class CatalogReader {
 public:
  CatalogReader() = default;
  explicit CatalogReader(std::shared_ptr<CatalogSlot> slot) : slot_(std::move(slot)) {}

  // The catalog to classify with now. Hot path: four atomic loads; the snapshot is taken again only after a
  // new one was published.
  routing::CatalogState state() {
    if (!slot_) return {};
    const uint64_t covered = slot_->covered.load(std::memory_order_acquire);
    const uint64_t published = slot_->published.load(std::memory_order_acquire);
    if (published != seen_) {
      snapshot_ = slot_->snapshot.load(std::memory_order_acquire);
      seen_ = published;
    }
    const bool refreshing = slot_->holds.load(std::memory_order_acquire) > 0 ||
                            covered < slot_->changes.load(std::memory_order_acquire);
    return {snapshot_.get(), refreshing};
  }
  const std::shared_ptr<CatalogSlot>& slot() const { return slot_; }
  // No load has finished for the database yet (pgmux just started, or the database is new to it), and no request
  // has waited that first load out. Hot path: one test once it has loaded.
  bool first_load_pending() {
    if (first_loaded_ || !slot_) return false;
    first_loaded_ = slot_->covered.load(std::memory_order_acquire) > 0 ||
                    slot_->first_wait_over.load(std::memory_order_acquire);
    return !first_loaded_;
  }
  // A request waited kFirstCatalogWait: the database's requests are judged without the catalog until it loads.
  // True for the first to give up.
  bool give_up_first_load() { return slot_ && !slot_->first_wait_over.exchange(true); }

 private:
  std::shared_ptr<CatalogSlot> slot_;
  std::shared_ptr<const routing::FunctionCatalog> snapshot_;
  uint64_t seen_ = 0;
  bool first_loaded_ = false;
};

class FunctionCatalogs;

// One client's catalog DDL, from when it is sent until its client has nothing owed outside a transaction (or
// ends): meanwhile the database's reads go to the primary. end() counts the change and asks for a load.
class CatalogChangeHold {
 public:
  CatalogChangeHold() = default;
  ~CatalogChangeHold() { end(); }
  CatalogChangeHold(const CatalogChangeHold&) = delete;
  CatalogChangeHold& operator=(const CatalogChangeHold&) = delete;

  void begin(FunctionCatalogs& catalogs, const std::shared_ptr<CatalogSlot>& slot);  // no-op while held
  void end();                                                                        // no-op when not held
  bool held() const { return slot_ != nullptr; }

 private:
  FunctionCatalogs* catalogs_ = nullptr;
  std::shared_ptr<CatalogSlot> slot_;
};

class FunctionCatalogs {
 public:
  using LoadRequest = std::function<void(std::shared_ptr<CatalogSlot>)>;

  // Thread-safe. The slot of a server database; the first call for a database asks for its first load.
  std::shared_ptr<CatalogSlot> slot_for(const std::string& server_database);
  // Thread-safe. Catalog DDL ran on the slot's database: reads go to the primary until the catalog is loaded
  // again, which this asks for.
  void note_change(const std::shared_ptr<CatalogSlot>& slot);
  // Every slot so far, for the timed reload.
  std::vector<std::shared_ptr<CatalogSlot>> slots() const;
  // Set before any worker starts: how a load is asked for (Control posts it to the loader on its loop).
  // Without it nothing is loaded: clients classify with the built-in list and write_functions only.
  void set_load_request(LoadRequest request) { request_ = std::move(request); }

 private:
  void ask_load(const std::shared_ptr<CatalogSlot>& slot);

  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<CatalogSlot>> slots_;
  LoadRequest request_;
};

}  // namespace pgmux::proxy
