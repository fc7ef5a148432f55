#include "proxy/control/function_catalogs.hpp"

namespace pgmux::proxy {

std::shared_ptr<CatalogSlot> FunctionCatalogs::slot_for(const std::string& server_database) {
  std::shared_ptr<CatalogSlot> slot;
  {
    std::lock_guard lock(mutex_);
    std::shared_ptr<CatalogSlot>& entry = slots_[server_database];
    if (entry) return entry;
    entry = std::make_shared<CatalogSlot>(server_database);
    slot = entry;
  }
  ask_load(slot);
  return slot;
}

void FunctionCatalogs::note_change(const std::shared_ptr<CatalogSlot>& slot) {
  slot->changes.fetch_add(1);  // before the client hears the DDL is done: its next read waits for the load
  ask_load(slot);
}

void FunctionCatalogs::ask_load(const std::shared_ptr<CatalogSlot>& slot) {
  if (request_) {
    request_(slot);
  } else {
    slot->covered.store(slot->changes.load());  // no loader: nothing to wait for
  }
}

void CatalogChangeHold::begin(FunctionCatalogs& catalogs, const std::shared_ptr<CatalogSlot>& slot) {
  if (slot_ || !slot) return;
  catalogs_ = &catalogs;
  slot_ = slot;
  slot_->holds.fetch_add(1);
}

void CatalogChangeHold::end() {
  if (!slot_) return;
  const std::shared_ptr<CatalogSlot> slot = std::move(slot_);
  slot_ = nullptr;
  catalogs_->note_change(slot);  // counted before the hold goes: no moment without one or the other
  slot->holds.fetch_sub(1);
}

std::vector<std::shared_ptr<CatalogSlot>> FunctionCatalogs::slots() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<CatalogSlot>> out;
  out.reserve(slots_.size());
  for (const auto& [name, slot] : slots_) out.push_back(slot);
  return out;
}

}  // namespace pgmux::proxy
