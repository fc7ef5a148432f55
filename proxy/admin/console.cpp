// WORK IN PROGRESS: commands are being written.
#include "proxy/admin/console.hpp"

namespace pgmux::proxy {

AdminConsole::AdminConsole(Worker& worker, uint64_t client_id, std::string user, bool may_change)
    : worker_(worker), client_id_(client_id), user_(std::move(user)), may_change_(may_change) {}

void AdminConsole::execute(std::string_view) {}
void AdminConsole::on_tick() {}
void AdminConsole::finish(protocol::ByteVector) {}

}  // namespace pgmux::proxy
