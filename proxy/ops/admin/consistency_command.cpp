// CHECK CONSISTENCY [ON <database>] [table ...]: answered when every snapshot is summed
// (proxy/control/consistency_check.hpp). One row per table and backend; a standby whose sum differs from the
// primary's, or could not be read, has matches = f.
#include <strings.h>

#include <optional>
#include <string>

#include "protocol/sqlstate.hpp"
#include "proxy/control/control.hpp"
#include "proxy/ops/admin/commands.hpp"
#include "routing/topology.hpp"

namespace pgmux::proxy::admin {
namespace {

ResultSet report_rows(const ConsistencyReport& report) {
  ResultSet r;
  r.tag = "CHECK CONSISTENCY";
  r.column("table").column("backend").column("role").column("lsn").column("rows", kInt8).column("checksum", kInt8);
  r.column("matches", kBool).column("error");
  for (const ConsistencyRow& row : report.rows) {
    r.row().cell(row.table).cell(row.backend).cell(row.role);
    if (row.lsn != 0) {
      r.cell(routing::format_lsn(row.lsn));
    } else {
      r.null_cell();
    }
    if (row.sum) {
      r.cell(row.sum->rows).cell(row.sum->checksum);
    } else {
      r.null_cell().null_cell();
    }
    r.cell(row.matches).cell(row.error);
  }
  return r;
}

// The server-side name of database `name` as a client asking for it gets it: its entry's server_database, or the
// name itself through "*". Nothing when neither lets a client in.
std::optional<std::string> server_database_of(const std::string& name, const conf::Config& config) {
  const conf::Database* star = nullptr;
  for (const conf::Database& d : config.databases) {
    if (d.name == "*") {
      star = &d;
    } else if (d.name == name) {
      return d.server_database_for(name);
    }
  }
  if (star != nullptr) return star->server_database_for(name);
  return std::nullopt;
}

}  // namespace

Answer check_consistency_command(const Input& input, Context& context) {
  std::vector<std::string> words;
  for (const std::string& arg : input.args) {  // "a, b" and "a,b" name two tables
    size_t start = 0;
    while (start <= arg.size()) {
      const size_t comma = arg.find(',', start);
      const std::string word = arg.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!word.empty()) words.push_back(word);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  std::string database;  // "": the first configured database's
  if (!words.empty() && strcasecmp(words[0].c_str(), "ON") == 0) {
    if (words.size() < 2) {
      return Answer::fail(protocol::sqlstate::kSyntaxError, "ON needs a database name",
                          "the syntax is CHECK CONSISTENCY [ON <database>] [table ...]");
    }
    // The name a client connects with: a server_database entry reads its server's database; another name is read
    // as it is when a "*" entry lets clients in by any name.
    const std::string named = unquote_identifier(words[1]);
    const std::optional<std::string> on_server = server_database_of(named, *context.config);
    if (!on_server) {
      return Answer::fail(protocol::sqlstate::kInvalidCatalogName,
                          "database \"" + named + "\" is not configured, nor open through \"*\"",
                          "SHOW DATABASES lists them (names are case-sensitive)");
    }
    database = *on_server;
    words.erase(words.begin(), words.begin() + 2);
  }
  context.control->consistency_check().start(database, words, [reply = context.reply](const ConsistencyReport& report) {
    if (!report.sqlstate.empty()) {
      Answer failed = Answer::fail(report.sqlstate, report.message, report.hint);
      failed.notices = report.notices;
      reply(failed);
      return;
    }
    Answer done = Answer::of(report_rows(report));
    done.notices = report.notices;
    done.notices.push_back(report.message);
    reply(done);
  });
  return Answer::deferred();
}

}  // namespace pgmux::proxy::admin
