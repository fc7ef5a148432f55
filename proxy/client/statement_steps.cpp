#include "proxy/client/statement_steps.hpp"

namespace pgmux::proxy {

ResolvedStep StatementSteps::resolve(const StatementStep& step, const RequestInfo& request,
                                     const ClientSession& session) {
  ResolvedStep resolved;
  resolved.step = &step;
  const std::pair<std::string_view, const ParsedStatement*>* latest = nullptr;
  for (auto it = batch_names_.rbegin(); it != batch_names_.rend(); ++it) {
    if (it->first == step.name) {
      latest = &*it;
      break;
    }
  }
  if (latest) {
    resolved.in_batch = latest->second;  // null: closed earlier in the batch
  } else {
    resolved.in_session = session.find_statement(step.name);
  }
  switch (step.kind) {
    case StatementStepKind::Parse:
      if (resolved.in_batch) {
        resolved.outcome = ParseOutcome::ExistsInBatch;
      } else if (resolved.in_session && resolved.in_session->confirmed) {
        // Only a confirmed statement surely exists: the request that parsed it may still be running, or failed.
        resolved.outcome = ParseOutcome::ExistsInSession;
      } else {
        resolved.in_session = nullptr;
        resolved.outcome = ParseOutcome::Creates;
        batch_names_.emplace_back(step.name, &request.parses[step.parse]);
      }
      break;
    case StatementStepKind::Close:
      batch_names_.emplace_back(step.name, nullptr);
      break;
    case StatementStepKind::Use:
      break;
  }
  return resolved;
}

}  // namespace pgmux::proxy
