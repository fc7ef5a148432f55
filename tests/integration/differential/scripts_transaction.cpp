// Transaction blocks whose start pgmux holds back with the read/write split: the BEGIN it answers, and the SET
// TRANSACTION statements behind it that it answers too ("SET", status 'T'), byte for byte as PostgreSQL does.
#include <string>

#include "tests/integration/differential/scripts.hpp"

namespace pgmux::difftest {

namespace {
BindParams unnamed_bind() {
  BindParams b;  // the unnamed portal of the unnamed statement, no parameters
  return b;
}
}  // namespace

Script set_transaction_held(const Schema& s) {
  const std::string modes = "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')";
  return ScriptBuilder("set_transaction_held")
      .q("BEGIN")
      .q("SET TRANSACTION READ ONLY")
      .q("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
      .q(modes)
      .q("SELECT count(*) FROM " + s.items)
      .q("COMMIT")
      // READ WRITE after READ ONLY, before the first query: PostgreSQL takes it (a standby would not).
      .q("BEGIN")
      .q("SET TRANSACTION READ ONLY")
      .q("SET TRANSACTION READ WRITE")
      .q("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
      .q(modes)
      .q("COMMIT")
      // The block's first statement by the extended protocol, behind two held ones.
      .q("START TRANSACTION")
      .q("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
      .q("SET TRANSACTION NOT DEFERRABLE")
      .parse("", modes).bind(unnamed_bind()).describe('P', "").execute("").sync().expect_ready()
      .q("COMMIT")
      // Nothing but the held ones; a bad one (sent, not held: PostgreSQL's 42601 fails the block); after a
      // query (25001, as directly).
      .q("BEGIN").q("SET TRANSACTION READ ONLY").q("COMMIT")
      .q("BEGIN").q("SET TRANSACTION READ ONLY").q("SET TRANSACTION ISOLATION LEVEL BOGUS").q("SELECT 1").q("COMMIT")
      .q("BEGIN").q("SET TRANSACTION READ ONLY").q("SELECT 1").q("SET TRANSACTION READ WRITE").q("ROLLBACK")
      .build();
}

}  // namespace pgmux::difftest
