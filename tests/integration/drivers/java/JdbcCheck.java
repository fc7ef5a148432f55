// PostgreSQL JDBC (Debian libpostgresql-jdbc-java) as an application uses it: server-prepared statements at
// several prepareThreshold values, batches (plain, reWriteBatchedInserts, one that fails), large parameters,
// setReadOnly in both readOnlyModes, cursor-based fetches and errors. Prints a transcript for driver_diff: values,
// counts, digests and SQLSTATEs only. Run as a single source file:
//
//   java -cp /usr/share/java/postgresql.jar JdbcCheck.java [SCENARIO ...]    (connects with PGHOST, PGPORT, ...)
//
// Every connect and socket read is bounded (connectTimeout, loginTimeout, socketTimeout), so a stall ends as an
// 08006 error in the transcript rather than a hang.
import java.security.MessageDigest;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

public class JdbcCheck {
  interface Scenario {
    void run() throws Exception;
  }

  static void out(Object... parts) {
    StringBuilder line = new StringBuilder();
    for (Object p : parts) {
      if (line.length() > 0) line.append(' ');
      line.append(p);
    }
    System.out.println(line);
    System.out.flush();
  }

  static void check(boolean condition, String what) {
    if (!condition) out("CHECK FAILED:", what);
  }

  // An error as the client sees it: SQLSTATE and class in the transcript, the message (may hold OIDs) on stderr.
  static String errorLine(SQLException e) {
    System.err.println("JdbcCheck: " + e.getSQLState() + ": " + e.getMessage());
    return "ERROR " + e.getSQLState() + " " + e.getClass().getSimpleName();
  }

  static String hex(byte[] data) {
    StringBuilder hex = new StringBuilder();
    for (byte b : data) hex.append(String.format("%02x", b));
    return hex.toString();
  }

  static String md5(byte[] data) throws Exception {
    return hex(MessageDigest.getInstance("MD5").digest(data));
  }

  static String env(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }

  // A connection to PGHOST:PGPORT/PGDATABASE with extra URL parameters ("prepareThreshold=1&...").
  static Connection connect(String extra) throws SQLException {
    String url = "jdbc:postgresql://" + env("PGHOST", "127.0.0.1") + ":" + env("PGPORT", "5432") + "/"
        + env("PGDATABASE", "app") + "?connectTimeout=15&loginTimeout=15&socketTimeout=20&sslmode=disable"
        + (extra.isEmpty() ? "" : "&" + extra);
    Properties props = new Properties();
    props.setProperty("user", env("PGUSER", "app"));
    props.setProperty("password", env("PGPASSWORD", ""));
    return DriverManager.getConnection(url, props);
  }

  // A column value as text; byte arrays in hex (their toString is an identity hash).
  static String text(Object value) {
    return value instanceof byte[] ? "\\x" + hex((byte[]) value) : String.valueOf(value);
  }

  // All rows of a result set, each as a list of column values (getObject's text).
  static List<List<String>> rows(ResultSet rs) throws SQLException {
    List<List<String>> all = new ArrayList<>();
    int columns = rs.getMetaData().getColumnCount();
    while (rs.next()) {
      List<String> row = new ArrayList<>();
      for (int i = 1; i <= columns; i++) row.add(text(rs.getObject(i)));
      all.add(row);
    }
    return all;
  }

  // Runs one SQL string and prints its rows, update count or error.
  static void attempt(Connection conn, String label, String sql) {
    try (Statement st = conn.createStatement()) {
      boolean hasRows = st.execute(sql);
      out(label, hasRows ? rows(st.getResultSet()) : "count " + st.getUpdateCount());
    } catch (SQLException e) {
      out(label, errorLine(e));
    }
  }

  static void run(Connection conn, String... statements) throws SQLException {
    try (Statement st = conn.createStatement()) {
      for (String sql : statements) st.execute(sql);
    }
  }

  // The same PreparedStatement executed 8 times: with threshold N, pgjdbc switches to a named server-side
  // statement at the Nth execution (0 = never, -1 = named and binary from the first).
  static void prepareThresholds() throws Exception {
    for (int threshold : new int[] {5, 1, 0, -1}) {
      try (Connection conn = connect("prepareThreshold=" + threshold);
           PreparedStatement ps = conn.prepareStatement("SELECT ?::int * 3, ?::text, now() IS NOT NULL")) {
        List<String> results = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
          ps.setInt(1, i);
          ps.setString(2, "t" + threshold);
          try (ResultSet rs = ps.executeQuery()) {
            results.add(rows(rs).toString());
          }
        }
        out("threshold", threshold, results);
        reuseAcrossTransactions(conn, threshold);
      }
    }
  }

  // A server-prepared statement used inside transactions, across a commit and after a rolled-back error.
  static void reuseAcrossTransactions(Connection conn, int threshold) throws Exception {
    conn.setAutoCommit(false);
    try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int + 1")) {
      for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 3; i++) {
          ps.setInt(1, round * 10 + i);
          try (ResultSet rs = ps.executeQuery()) {
            out("tx", threshold, round, rows(rs));
          }
        }
        if (round == 1) {
          attempt(conn, "tx error " + threshold, "SELECT 1/0");
          conn.rollback();
        } else {
          conn.commit();
        }
      }
    }
    conn.setAutoCommit(true);
  }

  // A server-prepared SELECT * whose table gains a column between executions.
  static void planChange() throws Exception {
    try (Connection conn = connect("prepareThreshold=1")) {
      run(conn, "DROP TABLE IF EXISTS j_plan", "CREATE TABLE j_plan (id int, v text)",
          "INSERT INTO j_plan VALUES (1, 'a')");
      try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM j_plan WHERE id = ?")) {
        for (int i = 0; i < 5; i++) {
          if (i == 2) run(conn, "ALTER TABLE j_plan ADD COLUMN extra int DEFAULT 7");
          ps.setInt(1, 1);
          try (ResultSet rs = ps.executeQuery()) {
            out("plan", i, rows(rs));
          } catch (SQLException e) {
            out("plan", i, errorLine(e));
          }
        }
      }
    }
  }

  // The same inside transactions (autocommit off, pgjdbc's default autosave=never), the ALTER on another
  // connection: pgjdbc sends BEGIN in the batch with the statement's Bind, whose result formats follow the old
  // columns. PostgreSQL: 0A000 once, then pgjdbc prepares it again. Transaction pooling answered 08P01 "bind
  // message has 2 result formats but query has 3 columns" at every execution before.
  static void planChangeInTransactions() throws Exception {
    try (Connection conn = connect("prepareThreshold=1"); Connection ddl = connect("")) {
      run(ddl, "DROP TABLE IF EXISTS j_plan_tx", "CREATE TABLE j_plan_tx (id int, v text)",
          "INSERT INTO j_plan_tx VALUES (1, 'a')");
      conn.setAutoCommit(false);
      try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM j_plan_tx WHERE id = ?")) {
        for (int i = 0; i < 6; i++) {
          if (i == 2) run(ddl, "ALTER TABLE j_plan_tx ADD COLUMN extra int DEFAULT 7");
          ps.setInt(1, 1);
          try (ResultSet rs = ps.executeQuery()) {
            out("plan tx", i, rows(rs));
          } catch (SQLException e) {
            out("plan tx", i, errorLine(e));
          }
          try {
            conn.commit();
          } catch (SQLException e) {
            out("plan tx commit", i, errorLine(e));
            conn.rollback();
          }
        }
      }
      conn.setAutoCommit(true);
    }
  }

  static void batches() throws Exception {
    for (String extra : new String[] {"", "reWriteBatchedInserts=true"}) {
      try (Connection conn = connect(extra)) {
        run(conn, "DROP TABLE IF EXISTS j_batch", "CREATE TABLE j_batch (id int PRIMARY KEY, v text)");
        try (PreparedStatement ps = conn.prepareStatement("INSERT INTO j_batch VALUES (?, ?)")) {
          for (int i = 0; i < 300; i++) {
            ps.setInt(1, i);
            ps.setString(2, "v" + i);
            ps.addBatch();
          }
          int[] counts = ps.executeBatch();
          out("batch", extra, counts.length, Arrays.stream(counts).sum());
        }
        failingBatch(conn, extra);
        attempt(conn, "after batches " + extra, "SELECT count(*), sum(id) FROM j_batch");
        statementBatch(conn);
      }
    }
  }

  // A batch whose 4th row violates the primary key, in a transaction: nothing of it stays.
  static void failingBatch(Connection conn, String extra) throws SQLException {
    conn.setAutoCommit(false);
    try (PreparedStatement ps = conn.prepareStatement("INSERT INTO j_batch VALUES (?, ?)")) {
      for (int id : new int[] {1000, 1001, 1002, 5, 1003}) {
        ps.setInt(1, id);
        ps.setString(2, "dup?");
        ps.addBatch();
      }
      ps.executeBatch();
      out("failing batch", extra, "succeeded?");
    } catch (BatchUpdateException e) {
      out("failing batch", extra, errorLine(e), "next:", e.getNextException() == null ? "none"
          : e.getNextException().getSQLState());
    }
    conn.rollback();
    conn.setAutoCommit(true);
  }

  static void statementBatch(Connection conn) throws SQLException {
    try (Statement st = conn.createStatement()) {
      st.addBatch("UPDATE j_batch SET v = 'u' WHERE id < 10");
      st.addBatch("DELETE FROM j_batch WHERE id >= 290");
      st.addBatch("INSERT INTO j_batch VALUES (5000, 'x')");
      out("statement batch", Arrays.toString(st.executeBatch()));
    }
  }

  static void largeParameters() throws Exception {
    StringBuilder text = new StringBuilder();
    for (int i = 0; i < 100_000; i++) text.append((char) ('A' + i % 26));
    text.append('€');
    byte[] bytes = new byte[300_000];
    for (int i = 0; i < bytes.length; i++) bytes[i] = (byte) (i % 251);
    try (Connection conn = connect("prepareThreshold=2");
         PreparedStatement ps = conn.prepareStatement("SELECT length(?::text), md5(?::text), length(?), md5(?), ?")) {
      for (int i = 0; i < 4; i++) {
        ps.setString(1, text.toString());
        ps.setString(2, text.toString());
        ps.setBytes(3, bytes);
        ps.setBytes(4, bytes);
        ps.setBytes(5, bytes);
        try (ResultSet rs = ps.executeQuery()) {
          rs.next();
          out("large", i, rs.getInt(1), rs.getString(2), rs.getInt(3), rs.getString(4), md5(rs.getBytes(5)));
          check(rs.getInt(1) == 100_001, "length of a 100 001-character parameter");
        }
      }
      out("expected md5", md5(bytes));
    }
  }

  // setReadOnly with the default readOnlyMode=transaction: pgjdbc begins READ ONLY transactions when autocommit is
  // off and leaves autocommit statements alone.
  static void readOnly() throws Exception {
    try (Connection conn = connect("")) {
      run(conn, "DROP TABLE IF EXISTS j_ro", "CREATE TABLE j_ro (id int)");
      conn.setAutoCommit(false);
      conn.setReadOnly(true);
      attempt(conn, "ro select", "SELECT count(*) FROM j_ro");
      attempt(conn, "ro insert", "INSERT INTO j_ro VALUES (1)");
      conn.rollback();
      conn.setReadOnly(false);
      attempt(conn, "rw insert", "INSERT INTO j_ro VALUES (2)");
      conn.commit();
      conn.setAutoCommit(true);
      conn.setReadOnly(true);
      attempt(conn, "ro autocommit insert (transaction mode)", "INSERT INTO j_ro VALUES (3)");
      attempt(conn, "rows", "SELECT array_agg(id ORDER BY id) FROM j_ro");
    }
  }

  // readOnlyMode=always: setReadOnly(true) runs SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY, so even
  // autocommit writes fail with 25006 until setReadOnly(false).
  static void readOnlyAlways() throws Exception {
    try (Connection conn = connect("readOnlyMode=always")) {
      run(conn, "DROP TABLE IF EXISTS j_ro_always", "CREATE TABLE j_ro_always (id int)");
      conn.setReadOnly(true);
      attempt(conn, "always: insert", "INSERT INTO j_ro_always VALUES (1)");
      attempt(conn, "always: setting", "SHOW default_transaction_read_only");
      attempt(conn, "always: select", "SELECT count(*) FROM j_ro_always");
      conn.setReadOnly(false);
      attempt(conn, "always: insert after setReadOnly(false)", "INSERT INTO j_ro_always VALUES (2)");
      attempt(conn, "always: rows", "SELECT array_agg(id ORDER BY id) FROM j_ro_always");
    }
  }

  static void fetchSizeAndErrors() throws Exception {
    try (Connection conn = connect("")) {
      conn.setAutoCommit(false);
      String rowsQuery = "SELECT g, repeat('y', g % 100) FROM generate_series(1, ?) g";
      try (PreparedStatement ps = conn.prepareStatement(rowsQuery)) {
        ps.setFetchSize(50);
        ps.setInt(1, 2000);
        long sum = 0;
        int count = 0;
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            sum += rs.getLong(1) + rs.getString(2).length();
            count++;
          }
        }
        out("fetch size 50", count, sum);
      }
      conn.commit();
      conn.setAutoCommit(true);
      for (String sql : new String[] {"SELECT 1/0", "SELECT * FROM no_such_table", "SELEC 1", "SELECT 'x'::int"}) {
        attempt(conn, sql, sql);
      }
      attempt(conn, "types", "SELECT 1::int2, 2::int8, 1.5::numeric, true, 'é€'::text, '2024-02-29'::date,"
          + " '2024-02-29 12:34:56+00'::timestamptz, '\\x00ff'::bytea, ARRAY[1,2], '{\"a\":1}'::jsonb, NULL::int");
    }
  }

  public static void main(String[] args) {
    Map<String, Scenario> scenarios = new LinkedHashMap<>();
    scenarios.put("threshold", JdbcCheck::prepareThresholds);
    scenarios.put("plan_change", JdbcCheck::planChange);
    scenarios.put("plan_change_tx", JdbcCheck::planChangeInTransactions);
    scenarios.put("batch", JdbcCheck::batches);
    scenarios.put("large", JdbcCheck::largeParameters);
    scenarios.put("readonly", JdbcCheck::readOnly);
    scenarios.put("readonly_always", JdbcCheck::readOnlyAlways);
    scenarios.put("fetch_errors", JdbcCheck::fetchSizeAndErrors);
    List<String> names = args.length > 0 ? Arrays.asList(args) : new ArrayList<>(scenarios.keySet());
    for (String name : names) {
      Scenario scenario = scenarios.get(name);
      if (scenario == null) {
        System.err.println("unknown scenario " + name + " (have " + scenarios.keySet() + ")");
        System.exit(2);
      }
      out("==", name);
      try {
        scenario.run();
      } catch (Exception e) {
        out("UNCAUGHT in", name + ":", e instanceof SQLException ? errorLine((SQLException) e)
            : e.getClass().getSimpleName());
        e.printStackTrace();
      }
    }
    out("END");
  }
}
