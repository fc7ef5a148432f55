// ClientConn, portals bound by one request and executed by a later one (a Bind and Sync inside a transaction
// block, or before a Flush, then Execute in the next batch). The statement runs at the Execute, so that is where
// pgmux must see it: a SET run so is a session command of the later request (its class, its place in the session
// log). ClientSession::bound_portals keeps each such portal's statement text until it runs, is closed, or its
// transaction ends. The usual batch (Parse, Bind, Describe, Execute, Sync) binds and executes its portals itself:
// one comparison of counts, and nothing is kept.
#include <algorithm>

#include "protocol/framer.hpp"
#include "protocol/frontend_messages.hpp"
#include "proxy/client/client_conn.hpp"
#include "proxy/control/worker.hpp"
#include "proxy/server/server_conn.hpp"

namespace pgmux::proxy {

using namespace protocol;

namespace {

void forget_portal(LazyVector<ClientSession::BoundPortal>& portals, std::string_view name) {
  if (portals.empty()) return;
  std::erase_if(portals.make(), [&](const ClientSession::BoundPortal& p) { return p.name == name; });
  if (portals.empty()) portals.clear();  // no vector kept for a client that used a portal once
}

}  // namespace

// The statement text of a portal an earlier request bound and none has executed, or null.
const std::string* ClientConn::earlier_bound_portal(std::string_view portal) const {
  for (const ClientSession::BoundPortal& p : session_.bound_portals.view()) {
    if (p.name == portal) return &p.statement;
  }
  return nullptr;
}

// Calls visit(text) for each Execute of the request that runs a portal an earlier request bound.
void ClientConn::for_each_earlier_portal_run(const std::function<void(const std::string&)>& visit) const {
  if (session_.bound_portals.empty() || request_.executes == 0) return;
  ByteView rest(in_.data() + in_.parsed(), request_.size);
  std::vector<std::string_view> bound_here;
  while (!rest.empty()) {
    const Frame frame = next_frame(rest, worker_.max_message_size());
    if (frame.status != FrameStatus::Frame || rest.size() < frame.total()) return;
    const ByteView body = rest.subspan(frame.header_size(), frame.total() - frame.header_size());
    if (frame.tag == frontend::kBind) {
      if (auto bind = parse_bind(body)) bound_here.push_back(bind->portal);
    } else if (frame.tag == frontend::kExecute) {
      const auto execute = parse_execute(body);
      const bool here = execute && std::find(bound_here.begin(), bound_here.end(), execute->portal) != bound_here.end();
      const std::string* text = execute && !here ? earlier_bound_portal(execute->portal) : nullptr;
      if (text) visit(*text);
    }
    rest = rest.subspan(frame.total());
  }
}

// At forward: portals the request binds without executing them are kept with their statement's text; those it
// executes or closes are dropped (a portal executed again, after PortalSuspended, runs no new statement).
void ClientConn::note_bound_portals(uint64_t request) {
  if (request_.kind != RequestKind::Extended) return;
  if (request_.binds == request_.executes && request_.close_messages == 0 && session_.bound_portals.empty()) return;
  LazyVector<ClientSession::BoundPortal>& portals = session_.bound_portals;
  ByteView rest(in_.data() + in_.parsed(), request_.size);
  std::optional<std::string_view> unnamed;  // parsed by this request
  while (!rest.empty()) {
    const Frame frame = next_frame(rest, worker_.max_message_size());
    if (frame.status != FrameStatus::Frame || rest.size() < frame.total()) return;
    const ByteView body = rest.subspan(frame.header_size(), frame.total() - frame.header_size());
    if (frame.tag == frontend::kParse) {
      if (auto parse = parse_parse(body); parse && parse->statement.empty()) unnamed = parse->sql;
    } else if (frame.tag == frontend::kBind) {
      if (auto bind = parse_bind(body)) {
        forget_portal(portals, bind->portal);
        const std::optional<std::string_view> text =
            bind->statement.empty() ? unnamed : statement_text(bind->statement);
        if (text) portals.make().push_back({std::string(bind->portal), std::string(*text), request});
      }
    } else if (frame.tag == frontend::kExecute) {
      if (auto execute = parse_execute(body)) forget_portal(portals, execute->portal);
    } else if (frame.tag == frontend::kClose) {
      if (auto close = parse_close(body); close && close->kind == 'P') forget_portal(portals, close->name);
    }
    rest = rest.subspan(frame.total());
  }
}

// A transaction ended at the ReadyForQuery of request `request`: the portals bound up to it are gone.
void ClientConn::end_bound_portals(const ServerConn& server, uint64_t request) {
  if (session_.bound_portals.empty()) return;
  if (server.owed_client_requests() == 0) {
    session_.bound_portals.clear();
    return;
  }
  std::erase_if(session_.bound_portals.make(), [&](const ClientSession::BoundPortal& p) { return p.request <= request; });
  if (session_.bound_portals.empty()) session_.bound_portals.clear();
}

}  // namespace pgmux::proxy
