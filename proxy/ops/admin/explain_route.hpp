// EXPLAIN ROUTE <sql>: how pgmux would route a statement right now and why, without running it. The console
// explains for a fresh session; an application session gets its own answer (read-your-writes, pins, held standby).
#pragma once
#include <string_view>

#include "proxy/ops/admin/answer.hpp"
#include "routing/balancer.hpp"
#include "routing/classifier.hpp"
#include "routing/router.hpp"

namespace pgmux::proxy::admin {

// The balancer is a copy: explaining must not move the real rotation. catalog: the session database's function
// catalog (the console has none).
ResultSet explain_route_result(std::string_view sql, routing::Classifier& classifier,
                               const routing::ClientRouteState& state, const routing::BackendsView& view,
                               const routing::RouteSettings& settings, routing::Balancer balancer,
                               const routing::CatalogState& catalog = {});

// The SQL after "EXPLAIN ROUTE" when `sql` starts with those two words (any case), else nullopt-like empty view
// with *matched false.
std::string_view explain_route_target(std::string_view sql, bool* matched);

}  // namespace pgmux::proxy::admin
