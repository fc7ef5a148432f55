#include "proxy/ops/admin/explain_route.hpp"

#include <cctype>

#include "protocol/sqlstate.hpp"
#include "proxy/ops/admin/commands.hpp"
#include "proxy/control/prober.hpp"
#include "proxy/control/worker.hpp"
#include "routing/read_your_writes.hpp"

namespace pgmux::proxy::admin {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Skips one keyword (case-insensitive) and the blanks after it; false when `s` does not start with it.
bool skip_keyword(std::string_view& s, std::string_view keyword) {
  if (s.size() < keyword.size()) return false;
  for (size_t i = 0; i < keyword.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(s[i])) != keyword[i]) return false;
  }
  if (s.size() > keyword.size() && !is_space(s[keyword.size()])) return false;
  s.remove_prefix(keyword.size());
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  return true;
}

// Why each backend could or could not take this read now. must_see: the read must see a commit (read-your-writes or
// causal reads); required: the LSN that takes, if a sample after that commit exists yet.
std::string candidates(const routing::BackendsView& view, const routing::ClientRouteState& state,
                       std::optional<routing::CommitToSee> must_see, std::optional<uint64_t> required) {
  std::string out;
  for (size_t i = 0; i < view.backends.size(); ++i) {
    const routing::BackendStatus& b = view.backends[i];
    if (b.role == routing::Role::Primary) continue;
    std::string why;
    if (i >= 64 || !((state.backend_mask >> i) & 1)) {
      why = "not a backend of this database";
    } else if (!b.readable) {
      why = b.excluded_reason;
    } else if (b.spec.weight <= 0) {
      why = "weight 0";
    } else if (must_see && (!required || !routing::standby_caught_up(view, static_cast<int>(i), *required))) {
      why = must_see->own ? "has not replayed this session's last write yet"
                          : "has not replayed the last write acknowledged to another client yet";
    } else {
      why = "eligible, weight " + std::to_string(b.spec.weight);
    }
    if (!out.empty()) out += "; ";
    out += b.spec.name + ": " + why;
  }
  return out.empty() ? "no standbys" : out;
}

}  // namespace

std::string_view explain_route_target(std::string_view sql, bool* matched) {
  std::string_view s = sql;
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  *matched = skip_keyword(s, "EXPLAIN") && skip_keyword(s, "ROUTE");
  return *matched ? s : std::string_view();
}

ResultSet explain_route_result(std::string_view sql, routing::Classifier& classifier,
                               const routing::ClientRouteState& state, const routing::BackendsView& view,
                               const routing::RouteSettings& settings, routing::Balancer balancer,
                               const routing::CatalogState& catalog) {
  const routing::Classification c = classifier.classify(sql, catalog);
  const routing::Route route = routing::route_statement(c, state, view, settings, balancer);
  const std::optional<routing::CommitToSee> must_see = routing::commit_to_see(state, settings.consistency);
  std::optional<uint64_t> required;
  if (must_see) required = routing::required_lsn(view, must_see->time);
  ResultSet r;
  r.tag = "EXPLAIN";
  r.column("statement_class").column("classified_by").column("classifier_reason").column("target");
  r.column("backend").column("route_reason").column("standbys");
  r.row().cell(routing::to_string(c.kind)).cell(c.parsed ? "parser" : "lexer").cell(c.reason);
  r.cell(routing::to_string(route.target));
  if (route.backend >= 0 && static_cast<size_t>(route.backend) < view.backends.size()) {
    r.cell(view.backends[static_cast<size_t>(route.backend)].spec.name);
  } else {
    r.null_cell();
  }
  r.cell(routing::to_string(route.reason)).cell(candidates(view, state, must_see, required));
  return r;
}

Answer explain_route(const Input& input, Context& context) {
  if (input.rest.empty()) {
    return Answer::fail(protocol::sqlstate::kSyntaxError, "EXPLAIN ROUTE needs a statement",
                        "for example: EXPLAIN ROUTE SELECT 1");
  }
  const routing::RouteSettings settings = route_settings_of(context.config->routing);
  routing::ClientRouteState fresh;  // a new session: no writes yet, nothing pinned
  fresh.cluster_commit = context.worker->shared().commits.latest();  // but other clients' commits count
  fresh.cluster_unapplied_commit = context.worker->shared().commits.latest_unapplied().value_or(0);
  return Answer::of(explain_route_result(input.rest, context.worker->classifier(), fresh, *context.view, settings,
                                         context.worker->balancer()));
}

}  // namespace pgmux::proxy::admin
