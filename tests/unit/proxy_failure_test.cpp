// The failure table (proxy/net/failure.*): every row complete, messages filled with their words, the
// ErrorResponse report_failure writes, and server_fate's reuse decisions.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "protocol/error_response.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/net/failure.hpp"
#include "proxy/ops/metrics.hpp"

using namespace pgmux;
using namespace pgmux::proxy;

namespace {

size_t placeholders(std::string_view pattern) {
  size_t n = 0;
  for (size_t at = pattern.find("{}"); at != std::string_view::npos; at = pattern.find("{}", at + 2)) ++n;
  return n;
}

// The one ErrorResponse report_failure appends, decoded.
protocol::ErrorFields decode(const protocol::ByteVector& out) {
  REQUIRE(out.size() > 5);
  REQUIRE(static_cast<char>(out[0]) == 'E');
  auto fields = protocol::parse_error_fields(protocol::ByteView(out).subspan(5));
  REQUIRE(fields.has_value());
  return *fields;
}

}  // namespace

TEST_CASE("failure table: every Failure has a complete row with a unique label") {
  std::set<std::string> labels;
  for (size_t i = 0; i < kFailureCount; ++i) {
    const auto failure = static_cast<Failure>(i);
    const FailureRow& row = failure_row(failure);
    const std::string sqlstate = row.sqlstate;
    const std::string label = row.label;
    CAPTURE(label);
    CHECK(row.failure == failure);
    REQUIRE(sqlstate.size() == 5);
    for (char c : sqlstate) CHECK(((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')));
    CHECK(sqlstate_class_index(sqlstate) < kSqlstateClasses);
    CHECK(std::string(row.message).size() > 0);
    CHECK(std::string(row.log).size() > 0);
    CHECK(placeholders(row.hint) == 0);  // hints are fixed advice
    REQUIRE(!label.empty());
    for (char c : label) CHECK(((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'));
    CHECK(labels.insert(label).second);
    CHECK(std::string(to_string(failure)) == label);
  }
}

TEST_CASE("failure table: filling every placeholder leaves none") {
  for (size_t i = 0; i < kFailureCount; ++i) {
    const FailureRow& row = failure_row(static_cast<Failure>(i));
    CAPTURE(row.label);
    std::vector<std::string> words(placeholders(row.message) + placeholders(row.detail), "w");
    const FailureReport report(row.failure, words);
    CHECK(report.message().find("{}") == std::string::npos);
    CHECK(report.message().find('?') == std::string::npos);
    CHECK(report.detail().find("{}") == std::string::npos);
  }
}

TEST_CASE("failure messages name the setting, pool and backend they are about") {
  CHECK(FailureReport(Failure::IdleTransactionTimeout, {"60"}).message() ==
        "terminating connection due to idle-in-transaction timeout (pgmux idle_transaction_timeout is 60 s)");
  CHECK(FailureReport(Failure::QueryWaitTimeout, {"app", "1 s"}).message() ==
        "pgmux: query_wait_timeout: no server connection became free in pool \"app\" within 1 s");
  CHECK(FailureReport(Failure::TooManyClients, {"100"}).message() ==
        "sorry, too many clients already (pgmux max_client_conn is 100)");
  CHECK(FailureReport(Failure::UnknownRole, {"bob"}).message() == "role \"bob\" does not exist");

  SUBCASE("a server's failure: its words first, then the pool's for the detail") {
    FailureReport report(Failure::ServerConnectFailed, {"connection refused"});
    CHECK(report.message() == "could not connect to server: connection refused");
    report.add_words({"app.app.p", "p", "127.0.0.1:5432"});
    CHECK(report.message() == "could not connect to server: connection refused");
    CHECK(report.detail() == "pgmux pool \"app.app.p\", backend \"p\" at 127.0.0.1:5432");
  }
  SUBCASE("a word missing shows as ?, an empty one as nothing") {
    CHECK(FailureReport(Failure::UnknownDatabase).message() == "database \"?\" does not exist");
    CHECK(FailureReport(Failure::NoPrimaryInTime, {"30", ""}).detail().empty());
    CHECK(FailureReport(Failure::NoPrimaryInTime, {"30", "split brain"}).detail() == "split brain");
  }
  SUBCASE("placeholders in the words are not filled again") {
    CHECK(FailureReport(Failure::UnknownRole, {"{}"}).message() == "role \"{}\" does not exist");
  }
}

TEST_CASE("relayed failures carry PostgreSQL's SQLSTATE and message") {
  const auto refused = FailureReport::relayed(Failure::ServerLoginRefused, "3D000", "database \"x\" does not exist");
  CHECK(refused.sqlstate() == "3D000");
  CHECK(refused.message() == "database \"x\" does not exist");
  const auto no_code = FailureReport::relayed(Failure::PrepareFailed, "", "server connection lost");
  CHECK(no_code.sqlstate() == protocol::sqlstate::kConnectionFailure);
  // pgmux's words around PostgreSQL's message: a session command that could not be replayed on a server.
  const auto replay = FailureReport::relayed_words(
      Failure::SessionReplayFailed, "42501", {"SET ROLE r", "7", "primary", "permission denied to set role \"r\""});
  CHECK(replay.sqlstate() == "42501");
  CHECK(replay.message() ==
        "could not restore session setting \"SET ROLE r\" on server S-7 (backend \"primary\"): permission denied to "
        "set role \"r\"");
  CHECK(failure_row(Failure::SessionReplayFailed).severity == Severity::Fatal);
  CHECK(failure_row(Failure::SessionReplayFailed).server == ServerFate::Close);
  const auto begin = FailureReport::relayed_words(Failure::DeferredBeginRefused, "42601",
                                                  {"BEGIN x", "7", "primary", "syntax error at or near \"x\""});
  CHECK(begin.sqlstate() == "42601");
  CHECK(begin.message() == "could not start the transaction \"BEGIN x\" on server S-7 (backend \"primary\"): syntax "
                           "error at or near \"x\"");
  CHECK(failure_row(Failure::DeferredBeginRefused).severity == Severity::Fatal);
}

TEST_CASE("severity: FATAL ends the session, a request error before login ends the login") {
  CHECK(effective_severity(Failure::IdleTransactionTimeout, true) == Severity::Fatal);
  CHECK(effective_severity(Failure::QueryWaitTimeout, true) == Severity::Error);
  CHECK(effective_severity(Failure::QueryWaitTimeout, false) == Severity::Fatal);
  CHECK(effective_severity(Failure::PlanChanged, true) == Severity::Error);
  CHECK(effective_severity(Failure::ClientClosed, true) == Severity::Silent);
  CHECK(effective_severity(Failure::ClientClosed, false) == Severity::Silent);
  CHECK(failure_row(Failure::KilledByAdmin).severity == Severity::Fatal);
  CHECK(failure_row(Failure::ServerLostInFlight).severity == Severity::Error);
  CHECK(failure_row(Failure::ServerLostSessionGone).severity == Severity::Fatal);
  // As PostgreSQL at authentication_timeout, whatever stage the login is in: the connection closes, no message;
  // logged and counted as a FATAL (pgmux_client_login_failures_total, errors by SQLSTATE).
  CHECK(failure_row(Failure::LoginTimeout).severity == Severity::FatalUnsent);
}

TEST_CASE("SQLSTATEs and wording that clients and tests compare with PostgreSQL") {
  auto check = [](Failure f, const char* sqlstate, const char* message) {
    CAPTURE(to_string(f));
    CHECK(std::string(failure_row(f).sqlstate) == sqlstate);
    CHECK(std::string(failure_row(f).message) == message);
  };
  check(Failure::PlanChanged, "0A000", "cached plan must not change result type");
  check(Failure::LoginTimeout, "57014", "canceling authentication due to timeout");
  check(Failure::AdminShutdown, "57P01", "terminating connection due to administrator command");
  check(Failure::AuthFailed, "28P01", "password authentication failed for user \"{}\"");
  check(Failure::UnknownDatabase, "3D000", "database \"{}\" does not exist");
  // The mock exchange's failures read exactly as a wrong password does.
  check(Failure::UnknownRolePassword, "28P01", "password authentication failed for user \"{}\"");
  check(Failure::NoUsableScramSecret, "28P01", "password authentication failed for user \"{}\"");
  check(Failure::NoHbaEntry, "28000", "no pg_hba.conf entry for host \"{}\", user \"{}\", database \"{}\", {}");
  check(Failure::HbaRejected, "28000",
        "pg_hba.conf rejects connection for host \"{}\", user \"{}\", database \"{}\", {}");
  check(Failure::CertAuthFailed, "28000", "certificate authentication failed for user \"{}\"");
  CHECK(std::string(failure_row(Failure::IdleTransactionTimeout).sqlstate) == "25P03");
  CHECK(std::string(failure_row(Failure::ClientIdleTimeout).sqlstate) == "57P05");
}

TEST_CASE("report_failure: one ErrorResponse, counted by SQLSTATE class") {
  WorkerMetrics metrics;
  protocol::ByteVector out;
  report_failure(Failure::StatementPoolingTransaction, Severity::Error, metrics, "C-1 test", out);
  const protocol::ErrorFields fields = decode(out);
  CHECK(fields.severity == "ERROR");
  CHECK(fields.sqlstate == "0A000");
  CHECK(fields.message.find("statement pooling mode") != std::string::npos);
  CHECK(fields.hint == "Send the whole transaction in one query string, or use transaction pooling.");
  CHECK(fields.detail.empty());
  CHECK(metrics.errors[sqlstate_class_index("0A")].get() == 1);

  out.clear();
  report_failure({Failure::UnknownDatabase, {"nope"}}, Severity::Fatal, metrics, "C-2 test", out);
  CHECK(decode(out).severity == "FATAL");
  CHECK(decode(out).message == "database \"nope\" does not exist");
  CHECK(metrics.errors[sqlstate_class_index("3D")].get() == 1);

  out.clear();
  report_failure(Failure::ClientTerminated, Severity::Silent, metrics, "C-3 test", out);
  CHECK(out.empty());

  report_failure(Failure::LoginTimeout, Severity::FatalUnsent, metrics, "C-4 test", out);
  CHECK(out.empty());  // nothing sent, but counted
  CHECK(metrics.errors[sqlstate_class_index("57")].get() == 1);
}

TEST_CASE("report_failure: startup refusals as PostgreSQL words them, protocol 2's format when asked") {
  WorkerMetrics metrics;
  protocol::ByteVector out;
  report_failure({Failure::DataAfterEncryptionRequest, {"SSL request"}}, Severity::Fatal, metrics, "C-4 test", out);
  const protocol::ErrorFields fields = decode(out);
  CHECK(fields.sqlstate == "08P01");
  CHECK(fields.message == "received unencrypted data after SSL request");
  CHECK(fields.detail ==
        "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.");

  out.clear();
  FailureReport old_client(Failure::ProtocolUnsupported,
                           {"unsupported frontend protocol 2.0: server supports 3.0 to 3.0"});
  old_client.answer_in_protocol2();
  report_failure(old_client, Severity::Fatal, metrics, "C-5 test", out);
  const std::string text(reinterpret_cast<const char*>(out.data()), out.size());
  CHECK(text == std::string("EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0", 72));
  CHECK(metrics.errors[sqlstate_class_index("0A")].get() == 1);

  // PostgreSQL closes without a word on an invalid startup-packet length.
  CHECK(failure_row(Failure::StartupFraming).severity == Severity::Silent);
}

TEST_CASE("server_fate: the one decision whether a given-back server serves again") {
  ServerFacts idle;
  idle.clean = true;
  CHECK(server_fate(idle).fate == ServerFate::Reuse);
  CHECK(server_fate(idle, Failure::ClientClosed).fate == ServerFate::Reuse);
  CHECK(server_fate(idle, Failure::KilledByAdmin).fate == ServerFate::Reuse);

  SUBCASE("mid-request servers close") {
    ServerFacts busy;
    CHECK(server_fate(busy).fate == ServerFate::Close);
    ServerFacts copying = idle;
    copying.copy_in = true;
    CHECK(server_fate(copying, Failure::ClientClosed).fate == ServerFate::Close);
    ServerFacts cancel_coming = idle;  // it would cancel the next client's query
    cancel_coming.cancel_on_its_way = true;
    CHECK(server_fate(cancel_coming).fate == ServerFate::Close);
  }
  SUBCASE("failures whose row says Close close even an idle server") {
    CHECK(server_fate(idle, Failure::PrimaryMoved).fate == ServerFate::Close);
    CHECK(server_fate(idle, Failure::ParameterRejected).fate == ServerFate::Close);
  }
  SUBCASE("session state is reset, a retiring server closes") {
    ServerFacts session = idle;
    session.session_pooling = true;
    CHECK(server_fate(session).fate == ServerFate::Reset);
    ServerFacts pinned = idle;
    pinned.session_state = true;
    CHECK(server_fate(pinned, Failure::ClientTerminated).fate == ServerFate::Reset);
    ServerFacts expired = pinned;
    expired.retiring = "server_lifetime reached";
    const ServerVerdict verdict = server_fate(expired);
    CHECK(verdict.fate == ServerFate::Close);
    CHECK(std::string(verdict.why) == "server_lifetime reached");
  }
}
