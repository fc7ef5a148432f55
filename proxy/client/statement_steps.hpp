// What each message of an extended batch that names a prepared statement refers to, in batch order, as
// PostgreSQL resolves it: a Parse creates the name or fails with 42P05 because it exists (in the session, or
// parsed earlier in the same batch); a Bind, Describe or Close finds the statement parsed earlier in the batch,
// else the session's, else nothing (a Close earlier in the batch removed it). Pure: the statement map and the
// batch in, one resolution per step out (tests/unit/proxy_statement_steps_test.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/client/request_scanner.hpp"
#include "proxy/client/session.hpp"

namespace pgmux::proxy {

// A Parse of a named statement: what PostgreSQL will answer.
enum class ParseOutcome : uint8_t {
  Creates,          // the name is free: ParseComplete, the statement exists from now on
  ExistsInSession,  // a statement of that name exists from an earlier request: 42P05
  ExistsInBatch,    // parsed earlier in this batch: 42P05
};

struct ResolvedStep {
  const StatementStep* step = nullptr;
  ParseOutcome outcome = ParseOutcome::Creates;  // Parse steps only
  // The statement the step names (for a failing Parse: the one that exists): parsed earlier in the batch, or
  // the session's; both null when it does not exist.
  const ParsedStatement* in_batch = nullptr;
  const PreparedStatement* in_session = nullptr;
};

// Walks the batch's named steps (the unnamed statement is skipped) in order; `visit(const ResolvedStep&)`
// returns false to stop. The session is read, never changed: the caller applies what it needs.
class StatementSteps {
 public:
  template <typename Visit>
  void walk(const RequestInfo& request, const ClientSession& session, Visit&& visit) {
    batch_names_.clear();
    for (const StatementStep& step : request.steps) {
      if (step.name.empty()) continue;
      const ResolvedStep resolved = resolve(step, request, session);
      if (!visit(resolved)) return;
    }
  }

 private:
  ResolvedStep resolve(const StatementStep& step, const RequestInfo& request, const ClientSession& session);

  // Names parsed (the Parse) or closed (null) earlier in the batch, latest last; reused between batches.
  std::vector<std::pair<std::string_view, const ParsedStatement*>> batch_names_;
};

// The server names of one request's named steps as it is forwarded (transaction pooling,
// ClientConn::resolve_server_names): worked out, rewritten into the request and written in one go, so each worker
// keeps one set that its clients use in turn (reused, so no allocation per request) and an idle client holds none.
struct BatchServerNames {
  std::vector<std::string> of_parse;        // by Parse index: the name of the shared statement it creates
  std::vector<const std::string*> of_step;  // each named step's, in order (null: sent as is)
  std::vector<uint32_t> created;            // the Parses that create a shared statement (their index)
  // Named Parses of a name that exists (the server answers 42P05): index in the request's parses, name sent.
  std::vector<std::pair<size_t, const std::string*>> duplicates;
};

}  // namespace pgmux::proxy
