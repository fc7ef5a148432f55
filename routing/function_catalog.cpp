#include "routing/function_catalog.hpp"

#include "routing/classifier_rules.hpp"

namespace pgmux::routing {

NameSet::NameSet(std::vector<std::string> names) {
  names_.reserve(names.size());
  for (std::string& n : names) {
    const size_t bit = filter_bit(n.size(), n.empty() ? '\0' : n.front());
    filter_[bit / 64] |= uint64_t{1} << (bit % 64);
    names_.insert(std::move(n));
  }
}

bool NameSet::contains(std::string_view name) const {
  if (!may_contain(name.size(), name.empty() ? '\0' : name.front())) return false;
  return names_.find(name) != names_.end();
}

FunctionCatalog::FunctionCatalog(std::vector<std::string> volatile_functions, std::vector<std::string> volatile_views,
                                 uint64_t generation, std::vector<std::string> session_functions,
                                 std::vector<std::string> unlogged_relations)
    : functions_(std::move(volatile_functions)),
      views_(std::move(volatile_views)),
      session_functions_(std::move(session_functions)),
      unlogged_(std::move(unlogged_relations)),
      generation_(generation) {}

// body: the source of every function outside the system schemas whose language has one (SQL, PL/pgSQL, other
// PLs; a SQL-standard body, prosqlbody, read through to_jsonb so that PostgreSQL 12 and 13 answer too). sess: the
// bodies that run set_config, or SET / RESET / DISCARD / LISTEN as a statement (after a statement boundary, a
// PL/pgSQL keyword that starts a block or branch, or a quote: EXECUTE 'SET ...'), or that create temporary objects
// that outlive the transaction (a name qualified by pg_temp; TEMP TABLE / SEQUENCE / VIEW more often than ON COMMIT
// DROP: a scratch table dropped at commit leaves nothing, and pinning every caller of a hot function would cost
// dearly), then the bodies that call one of those by name (or by oid in a SQL-standard body). UPDATE ... SET has a
// name before it and is not matched. A body that builds such text at run time (EXECUTE of a computed string) and C
// functions are not seen.
constexpr const char* kSessionFunctionsPart = R"sql(, body AS MATERIALIZED (
 SELECT p.oid, p.proname, coalesce(p.prosrc, '') || coalesce(to_jsonb(p) ->> 'prosqlbody', '') AS src
 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
 WHERE l.lanname NOT IN ('internal', 'c')
  AND p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
), sess(oid, name) AS (
 SELECT b.oid, b.proname FROM body b
 WHERE b.src ~* '\mset_config\s*\(|(^|[;'']|\m(begin|then|else|loop)\M)\s*(set|reset|discard|listen)\M'
  OR b.src ~* '\mpg_temp(_[0-9]+)?"?\s*\.'
  OR (SELECT count(*) FROM regexp_matches(b.src, '\m(temp|temporary)\s+(table|sequence|view|recursive)\M', 'gi'))
   > (SELECT count(*) FROM regexp_matches(b.src, '\mon\s+commit\s+drop\M', 'gi'))
  OR strpos(b.src, ':funcid ' || 'pg_catalog.set_config(text,text,boolean)'::regprocedure::oid || ' ') > 0
 UNION
 SELECT b.oid, b.proname FROM body b JOIN sess s ON b.oid <> s.oid
  AND (b.src ~* ('\m' || regexp_replace(s.name, '([^[:alnum:]_])', '\\\1', 'g') || '\s*\(')
   OR strpos(b.src, ':funcid ' || s.oid || ' ') > 0)
))sql";

// vol: volatile functions, and aggregates whose transition or final function is volatile, less the built-ins
// that are the same on a standby. uses: what each view outside the system schemas calls (FuncExpr, OpExpr,
// Aggref, WindowFunc) and reads (RangeTblEntry), from its stored rule; the system views that read volatile
// functions are a fixed list (kSystemVolatileViews), which spares the server searching their large
// definitions each time. bad: the views that call a volatile function, then the views that read those. unl: the
// unlogged tables (partitioned ones too: PostgreSQL 15 allows them) and sequences (a standby has none of their
// rows and refuses to plan a read of one), then the views that read those and the parents (inheritance,
// partitioning) a read of which scans them.
const char* function_catalog_query() {
  static const std::string query = [] {
    // Built with append: GCC 12 at -O3 warns (-Wrestrict, a false positive) on operator+ of literals and strings.
    std::string text =
        "WITH RECURSIVE vol AS ("
        " SELECT p.oid, p.proname FROM pg_catalog.pg_proc p"
        " WHERE p.provolatile = 'v' AND NOT (p.pronamespace = 'pg_catalog'::regnamespace AND p.proname IN (";
    bool first = true;
    for (std::string_view name : kVolatileBuiltinsSafeOnStandby) {
      text.append(first ? "'" : ", '").append(name).append("'");
      first = false;
    }
    text.append("))"
           " UNION"
           " SELECT a.aggfnoid, ap.proname FROM pg_catalog.pg_aggregate a"
           " JOIN pg_catalog.pg_proc t ON t.oid IN (a.aggtransfn, a.aggfinalfn) AND t.provolatile = 'v'"
           " JOIN pg_catalog.pg_proc ap ON ap.oid = a.aggfnoid"
           "), uses AS MATERIALIZED ("
           " SELECT c.oid AS view, m[1] AS kind, m[2]::oid AS ref"
           " FROM pg_catalog.pg_class c"
           " JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid AND r.ev_type = '1'"
           " CROSS JOIN LATERAL regexp_matches(r.ev_action::text,"
           "  ':(funcid|opfuncid|aggfnoid|winfnoid|relid) (\\d+)', 'g') AS m"
           " WHERE c.relkind = 'v'"
           "  AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)"
           "), bad(view) AS ("
           " SELECT u.view FROM uses u JOIN vol ON u.kind <> 'relid' AND u.ref = vol.oid"
           " UNION"
           " SELECT u.view FROM uses u JOIN bad b ON u.kind = 'relid' AND u.ref = b.view"
           "), unl(rel) AS ("
           " SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p', 'S')"
           " UNION"
           " SELECT over.rel FROM unl n JOIN ("
           "  SELECT u.view AS rel, u.ref AS child FROM uses u WHERE u.kind = 'relid'"
           "  UNION ALL"
           "  SELECT i.inhparent, i.inhrelid FROM pg_catalog.pg_inherits i"
           " ) over ON over.child = n.rel"
           ")");
    text.append(kSessionFunctionsPart);
    text.append(" SELECT DISTINCT 'f', proname::text FROM vol"
                " UNION ALL"
                " SELECT DISTINCT 'v', c.relname::text FROM bad JOIN pg_catalog.pg_class c ON c.oid = bad.view"
                " UNION ALL"
                " SELECT DISTINCT 's', name::text FROM sess"
                " UNION ALL"
                " SELECT DISTINCT 'u', c.relname::text FROM unl JOIN pg_catalog.pg_class c ON c.oid = unl.rel");
    return text;
  }();
  return query.c_str();
}

void FunctionCatalogBuilder::add_row(std::string_view kind, std::string_view name) {
  if (kind == "f") {
    functions_.emplace_back(name);
  } else if (kind == "v") {
    views_.emplace_back(name);
  } else if (kind == "s") {
    session_functions_.emplace_back(name);
  } else if (kind == "u") {
    unlogged_.emplace_back(name);
  }
}

FunctionCatalog FunctionCatalogBuilder::build(uint64_t generation) && {
  for (std::string_view name : kSystemVolatileViews) views_.emplace_back(name);
  return FunctionCatalog(std::move(functions_), std::move(views_), generation, std::move(session_functions_),
                         std::move(unlogged_));
}

}  // namespace pgmux::routing
