// COPY FROM STDIN whose data and end the client sends before PostgreSQL asks for them (CopyInResponse), with a
// request pipelined behind: PostgreSQL takes the data as the COPY's, answers the COPY, then the next request.
// Through transaction pooling the next request's reply went missing, and the server went back to the pool while
// it was still coming: the next client of that server got it. From a black-box hunt.
#include <string>

#include "tests/integration/differential/scripts.hpp"

namespace pgmux::difftest {

Script copy_ended_ahead(const Schema& s) {
  const std::string copy = "COPY " + s.copies + " FROM STDIN";
  const std::string count = "SELECT count(*) FROM " + s.copies;
  ScriptBuilder b("copy_ended_ahead");
  // An extended batch that carries its data, CopyDone and Sync; a Query behind it in the same write.
  b.parse("", copy).bind(BindParams{}).execute("").copy_data("1\tone\n").copy_done().sync().query(count)
      .expect_ready(2);
  // ... ended by CopyFail, and with data PostgreSQL rejects; an extended batch behind.
  b.parse("", copy).bind(BindParams{}).execute("").copy_data("2\ttwo\n").copy_fail("gave up").sync()
      .parse("", count).bind(BindParams{}).execute("").sync().expect_ready(2);
  b.parse("", copy).bind(BindParams{}).execute("").copy_data("x\tnot a number\n").copy_done().sync().query(count)
      .expect_ready(2);
  // The simple protocol: the Query, its data and CopyDone, and a Query behind, in one write.
  b.query(copy).copy_data("3\tthree\n").copy_done().query(count).expect_ready(2);
  // The COPY as a Query inside an open extended sequence.
  b.parse("", "SELECT 1").bind(BindParams{}).execute("").query(copy).copy_data("4\tfour\n").copy_done().sync()
      .query(count).expect_ready(3);
  // CopyDone in one write, the Sync and the next request in a later one.
  b.parse("", copy).bind(BindParams{}).execute("").copy_data("5\tfive\n").copy_done()
      .expect_messages(3);  // ParseComplete BindComplete CopyInResponse (CommandComplete waits for the Sync)
  b.sync().query(count).expect_ready(2);
  return b.build();
}

// PostgreSQL ignores Sync and Flush during COPY IN, and takes any other message there as the COPY's failure (the
// message is dropped): sent ahead of CopyInResponse, or after it. pgmux counted such a Sync as a request owed a
// ReadyForQuery: the client kept its server (transaction pooling), and after its Terminate stayed ending for good,
// its server held (from a black-box hunt).
Script copy_ignores_sync(const Schema& s) {
  const std::string copy = "COPY " + s.copies + " FROM STDIN";
  const std::string count = "SELECT count(*) FROM " + s.copies;
  ScriptBuilder b("copy_ignores_sync");
  b.query(copy).copy_data("1\tone\n").sync().copy_done().expect_ready();
  b.query(copy).sync().flush().copy_data("2\ttwo\n").copy_done().query(count).expect_ready(2);
  b.query(copy).expect_messages(1, std::chrono::milliseconds(200));  // CopyInResponse
  b.copy_data("3\tthree\n").sync().flush().copy_data("4\tfour\n").copy_done().expect_ready();
  b.parse("", copy).bind(BindParams{}).execute("").copy_data("6\tsix\n").sync().copy_done().sync().query(count)
      .expect_ready(2);
  // The batch's Sync before the data, ignored inside the COPY: the Sync after CopyDone answers (one ReadyForQuery),
  // or a Query behind it.
  b.parse("", copy).bind(BindParams{}).execute("").sync().copy_data("7\tseven\n").copy_done().sync().expect_ready();
  b.parse("", copy).bind(BindParams{}).execute("").sync().copy_data("8\teight\n").copy_done().query(count)
      .expect_ready();
  b.q(count);
  // A Query inside the COPY is a protocol violation there: PostgreSQL ends the session (build() waits for it).
  b.query(copy).copy_data("5\tfive\n").query(count);
  return b.build();
}

// A COPY that fails before it starts in a sequence left open by Flush answers nothing more until the Sync: the
// Sync behind must not wait for the COPY to start (it hung).
Script copy_fails_in_open_sequence(const Schema& s) {
  ScriptBuilder b("copy_fails_in_open_sequence");
  b.parse("", "COPY " + s.copies + "_missing FROM STDIN").bind(BindParams{}).execute("").flush().expect_messages(3);
  b.sync().expect_ready();
  b.q("SELECT count(*) FROM " + s.copies);
  return b.build();
}

}  // namespace pgmux::difftest
