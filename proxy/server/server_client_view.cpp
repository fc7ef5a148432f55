// ServerConn, what the client reads in place of a server's message that would show pgmux's own doing: a parameter a
// RESET brought back to the shared server's login value, an error naming a shared statement (transaction pooling).
#include "proxy/server/server_conn.hpp"

#include <strings.h>

#include <algorithm>

#include "protocol/backend_messages.hpp"
#include "protocol/byte_writer.hpp"
#include "protocol/statement_naming.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/server/pool.hpp"

namespace pgmux::proxy {

using namespace protocol;

// Transaction pooling: a RESET (RESET ALL, DISCARD ALL, SET … TO DEFAULT) brings a parameter back to the value
// this shared server logged in with, but the client's default is its own startup value: the ParameterStatus it
// gets says that one, as on a direct connection (the session log sets it on the server before its next request).
// When the client saw that value already, nothing is sent, as PostgreSQL reports only values that changed.
ServerConn::ResetView ServerConn::client_view_of_reset(ByteView body, ByteVector** own) {
  const auto ps = parse_parameter_status(body);
  if (!ps || !client_) return ResetView::AsIs;
  if (SessionCommand* command = owed_.front().session.get()) command->reported.emplace_back(ps->name);
  const std::string* raw_wanted = client_->wanted_params().find(ps->name);
  if (!raw_wanted) return ResetView::AsIs;
  // As PostgreSQL spells it (a login through a server kept the client's spelling: "true" for "on").
  const std::string server_value(ps->value);
  const std::string wanted = postgres_spelling(ps->name, *raw_wanted, &server_value);
  if (wanted == ps->value) return ResetView::AsIs;
  const SessionParams login = pool_.login_params();
  const std::string* server_default = login.find(ps->name);
  if (!server_default || *server_default != ps->value) return ResetView::AsIs;  // the client's own SET
  // The server was in step with the client's session before this request: its value then is what the client saw.
  const std::string* before = params_.find(ps->name);
  if (before && *before == wanted) return ResetView::Dropped;
  *own = &rewritten_.emplace_back();
  build_parameter_status(**own, ps->name, wanted);
  return ResetView::Rewritten;
}

// Transaction pooling: a RESET of a parameter the client had SET to this shared server's login value brings it to
// that same value here, so the server changes nothing and reports nothing; on a direct connection the client's
// startup value comes back, and PostgreSQL reports it. Without that report the client goes on with the old value:
// libpq escapes strings for standard_conforming_strings on while the session reads them with it off (a quote
// escaped by a backslash then ends the literal), decodes text in the wrong client_encoding, reads dates in the
// wrong DateStyle. Added before the ReadyForQuery of a request of one statement that ended outside a block (a
// RESET in a block is not reported so: README), with nothing sent behind it yet: the server's value now is then
// what the client last saw (it was in step with the client's session before the request, and reported nothing
// since). A request pipelined behind the RESET runs with the server's value, not the client's (README), and a
// report here would make the client believe otherwise. The value as PostgreSQL spells it ("on", not "ON": libpq
// compares standard_conforming_strings with "on"). Returns how many it wrote (the last entries of rewritten_).
size_t ServerConn::report_silent_resets(ByteView ready) {
  const OwedReply& front = owed_.front();
  const SessionCommand* command = front.session.get();
  const auto rfq = parse_ready_for_query(ready);
  if (!client_ || !command || command->resets.empty() || command->statements.size() != 1 || front.failed ||
      owed_.size() != 1 || !rfq || rfq->status != 'I') {
    return 0;
  }
  size_t written = 0;
  const SessionParams login = pool_.login_params();  // a copy: the pool's may change
  for (const auto& [name, server_default] : login.entries()) {
    if (command->resets != "*" && strcasecmp(command->resets.c_str(), name.c_str()) != 0) continue;
    if (std::find(command->reported.begin(), command->reported.end(), name) != command->reported.end()) continue;
    const std::string* wanted = client_->wanted_params().find(name);
    const std::string* now = params_.find(name);
    if (!wanted || !now || *now != server_default) continue;
    const std::string spelled = postgres_spelling(name, *wanted, &server_default);
    if (spelled == server_default) continue;
    build_parameter_status(rewritten_.emplace_back(), name, spelled);
    ++written;
  }
  return written;
}

// Transaction pooling: an error that names a shared statement ("pgmux_<hash>") names the client's own, as
// PostgreSQL would have written it: the 42P05 of a Parse sent under an existing shared statement's name (the
// request's duplicate_names), a Bind's 08P01 of a wrong parameter count (the client's statements). Null: the error
// goes as it is (also for a name of that form the client used without parsing it).
ByteVector* ServerConn::client_view_of_error(ByteView body) {
  const std::string_view text(reinterpret_cast<const char*>(body.data()), body.size());
  const size_t at = text.find("\"pgmux_");
  const size_t end = at == std::string_view::npos ? at : text.find('"', at + 1);
  if (end == std::string_view::npos) return nullptr;
  const std::string_view shared = text.substr(at + 1, end - at - 1);
  // ClientConn::copy_is_stale: the server's 26000 for the name a stale statement went out under.
  if (shared == protocol::kStalePlanStatement && owed_.front().stale_plan_sent &&
      text.find(std::string_view("\0C26000\0", 8)) != std::string_view::npos) {
    ByteVector& own = rewritten_.emplace_back();
    client_->build_plan_changed_error(own);
    return &own;
  }
  const std::string* client_name = nullptr;
  if (const auto& duplicates = owed_.front().duplicate_names) {
    for (const auto& [server_name, name] : *duplicates) {
      if (server_name == shared) client_name = &name;
    }
  }
  if (!client_name) client_name = client_->statement_name_for(shared);
  if (!client_name) return nullptr;
  std::string renamed(text.substr(0, at + 1));
  renamed.append(*client_name).append(text.substr(end));
  ByteVector& own = rewritten_.emplace_back();
  ByteWriter w(own);
  w.begin_message(backend::kErrorResponse);
  w.bytes(std::string_view(renamed));
  w.end_message();
  return &own;
}

}  // namespace pgmux::proxy
