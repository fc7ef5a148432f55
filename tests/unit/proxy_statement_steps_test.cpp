// How a batch's statement messages resolve, message by message, as PostgreSQL applies them: the order of Close
// and Parse of one name in a batch, 42P05 for a name that exists, and what later messages of the batch find.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocol/frontend_messages.hpp"
#include "proxy/client/statement_steps.hpp"

using namespace pgmux::protocol;
using namespace pgmux::proxy;

namespace {

struct Resolved {
  StatementStepKind kind;
  std::string name;
  ParseOutcome outcome;
  std::string found;  // "batch:<sql>", "session:<sql>" or "none"
};

std::vector<Resolved> resolve_all(const ByteVector& bytes, const ClientSession& session) {
  RequestInfo info;
  REQUIRE(scan_request(bytes, 1 << 20, 1 << 22, info).status == ScanStatus::Complete);
  StatementSteps steps;
  std::vector<Resolved> out;
  steps.walk(info, session, [&](const ResolvedStep& step) {
    std::string found = "none";
    if (step.in_batch) found = "batch:" + std::string(step.in_batch->sql);
    if (step.in_session) {
      auto parse = parse_parse(ByteView(step.in_session->parse).subspan(5));  // after the tag and length
      REQUIRE(parse);
      found = "session:" + std::string(parse->sql);
    }
    out.push_back({step.step->kind, std::string(step.step->name), step.outcome, found});
    return true;
  });
  return out;
}

// A session that has `name` for `sql`, confirmed (its request succeeded) or not.
void add_statement(ClientSession& session, const std::string& name, const std::string& sql, bool confirmed) {
  ByteVector parse;
  build_parse(parse, name, sql);
  ParsedStatement parsed{name, sql, parse};
  session.remember(parsed, {}, false, 1, 1).confirmed = confirmed;
}

}  // namespace

TEST_CASE("statement steps: Close then Parse of one name replaces it; later uses find the new one") {
  ClientSession session;
  add_statement(session, "s", "SELECT 1", true);
  ByteVector bytes;
  build_bind(bytes, "", "s", {});
  build_close(bytes, 'S', "s");
  build_parse(bytes, "s", "SELECT 2");
  build_describe(bytes, 'S', "s");
  build_sync(bytes);
  const auto steps = resolve_all(bytes, session);
  REQUIRE(steps.size() == 4);
  CHECK(steps[0].found == "session:SELECT 1");  // the Bind before the Close uses the old statement
  CHECK(steps[1].found == "session:SELECT 1");  // the Close closes it
  CHECK(steps[2].outcome == ParseOutcome::Creates);  // the name is free again
  CHECK(steps[3].found == "batch:SELECT 2");
}

TEST_CASE("statement steps: a Parse of a name the session has is 42P05; an unconfirmed one is not known to exist") {
  ClientSession session;
  add_statement(session, "s", "SELECT 1", true);
  add_statement(session, "pending", "SELECT 3", false);
  ByteVector bytes;
  build_parse(bytes, "s", "SELECT 2");
  build_parse(bytes, "pending", "SELECT 4");
  build_sync(bytes);
  const auto steps = resolve_all(bytes, session);
  REQUIRE(steps.size() == 2);
  CHECK(steps[0].outcome == ParseOutcome::ExistsInSession);
  CHECK(steps[0].found == "session:SELECT 1");  // the statement that exists: the server must have it to say so
  CHECK(steps[1].outcome == ParseOutcome::Creates);
  CHECK(steps[1].found == "none");
}

TEST_CASE("statement steps: a second Parse of a name in one batch is 42P05; after a Close, uses find nothing") {
  ClientSession session;
  ByteVector bytes;
  build_parse(bytes, "a", "SELECT 1");
  build_parse(bytes, "a", "SELECT 2");
  build_close(bytes, 'S', "a");
  build_bind(bytes, "", "a", {});
  build_close(bytes, 'S', "never");
  build_sync(bytes);
  const auto steps = resolve_all(bytes, session);
  REQUIRE(steps.size() == 5);
  CHECK(steps[0].outcome == ParseOutcome::Creates);
  CHECK(steps[1].outcome == ParseOutcome::ExistsInBatch);
  CHECK(steps[1].found == "batch:SELECT 1");
  CHECK(steps[2].found == "batch:SELECT 1");
  CHECK(steps[3].found == "none");  // PostgreSQL: 26000
  CHECK(steps[4].found == "none");  // PostgreSQL: no error for a Close of an unknown name
}

TEST_CASE("statement steps: the unnamed statement is not a step; a visitor can stop the walk") {
  ClientSession session;
  ByteVector bytes;
  build_parse(bytes, "", "SELECT 1");
  build_bind(bytes, "", "", {});
  build_parse(bytes, "x", "SELECT 2");
  build_parse(bytes, "y", "SELECT 3");
  build_sync(bytes);
  RequestInfo info;
  REQUIRE(scan_request(bytes, 1 << 20, 1 << 22, info).status == ScanStatus::Complete);
  StatementSteps steps;
  std::vector<std::string> seen;
  steps.walk(info, session, [&](const ResolvedStep& step) {
    seen.emplace_back(step.step->name);
    return false;
  });
  CHECK(seen == std::vector<std::string>{"x"});
}
