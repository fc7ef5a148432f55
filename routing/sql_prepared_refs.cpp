#include "routing/sql_prepared_refs.hpp"

#include <algorithm>

#include "routing/sql_lexer.hpp"

namespace pgmux::routing {
namespace {

constexpr size_t kMaxIdentifierBytes = 63;  // NAMEDATALEN - 1

bool is_name(const Token& t) { return t.kind == TokenKind::Word || t.kind == TokenKind::QuotedIdent; }

// The tokens of one statement, read one by one, with the text they span.
class StatementReader {
 public:
  StatementReader(SqlLexer& lexer, std::string_view sql) : lexer_(lexer), sql_(sql) {}

  // The next token of this statement; End at its ';' or at the end of the text.
  Token next() {
    if (done_) return Token{};
    Token t = lexer_.next();
    if (t.kind == TokenKind::End || (t.kind == TokenKind::Semicolon && depth_ == 0)) {
      done_ = true;
      ended_text_ = t.kind == TokenKind::End;
      return Token{};
    }
    if (t.kind == TokenKind::LParen) ++depth_;
    if (t.kind == TokenKind::RParen && depth_ > 0) --depth_;
    if (first_ == nullptr) first_ = t.text.data();
    last_end_ = t.text.data() + t.text.size();
    return t;
  }
  // Reads to the end of the statement: its whole text, without the ';'.
  std::string_view rest_and_text() {
    while (next().kind != TokenKind::End) {
    }
    if (first_ == nullptr) return {};
    return sql_.substr(static_cast<size_t>(first_ - sql_.data()), static_cast<size_t>(last_end_ - first_));
  }
  bool text_ended() const { return ended_text_; }

 private:
  SqlLexer& lexer_;
  std::string_view sql_;
  int depth_ = 0;
  bool done_ = false;
  bool ended_text_ = false;
  const char* first_ = nullptr;
  const char* last_end_ = nullptr;
};

PreparedRef make_ref(PreparedRefKind kind, const Token& name) {
  PreparedRef ref;
  ref.kind = kind;
  ref.name = fold_identifier(name.text);
  ref.unicode_escapes = name.kind == TokenKind::QuotedIdent && name.text.front() != '"';  // U&"..."
  return ref;
}

// PREPARE name ... (not PREPARE TRANSACTION): the whole statement is what another server needs.
void read_prepare(StatementReader& reader, std::vector<PreparedRef>& out) {
  const Token name = reader.next();
  if (!is_name(name) || (name.kind == TokenKind::Word && word_is(name.text, "transaction"))) {
    reader.rest_and_text();
    return;
  }
  PreparedRef ref = make_ref(PreparedRefKind::Prepare, name);
  const char* const name_end = name.text.data() + name.text.size();
  const bool lists_types = reader.next().kind == TokenKind::LParen;
  ref.statement = reader.rest_and_text();
  if (!lists_types) ref.types_at = static_cast<size_t>(name_end - ref.statement.data());
  out.push_back(std::move(ref));
}

void read_deallocate(StatementReader& reader, std::vector<PreparedRef>& out) {
  Token name = reader.next();
  if (name.kind == TokenKind::Word && word_is(name.text, "prepare")) name = reader.next();
  if (name.kind == TokenKind::Word && word_is(name.text, "all")) {
    out.push_back(PreparedRef{PreparedRefKind::DeallocateAll, {}, {}});
  } else if (is_name(name)) {
    out.push_back(make_ref(PreparedRefKind::Deallocate, name));
  }
  reader.rest_and_text();
}

// Any other statement: EXECUTE name wherever it stands (EXECUTE, EXPLAIN ... EXECUTE, CREATE TABLE ... AS
// EXECUTE), and reads of pg_prepared_statements. GRANT EXECUTE ON ..., EXECUTE FUNCTION/PROCEDURE name no
// statement.
void read_other(const Token& first, StatementReader& reader, std::vector<PreparedRef>& out) {
  Token previous;
  for (Token t = first; t.kind != TokenKind::End; previous = t, t = reader.next()) {
    if (t.kind != TokenKind::Word && t.kind != TokenKind::QuotedIdent) continue;
    if (previous.kind == TokenKind::Word && word_is(previous.text, "execute") && is_name(t) &&
        !(t.kind == TokenKind::Word &&
          (word_is(t.text, "on") || word_is(t.text, "function") || word_is(t.text, "procedure")))) {
      out.push_back(make_ref(PreparedRefKind::Execute, t));
    }
    if (t.kind == TokenKind::Word && word_is(t.text, "pg_prepared_statements")) {
      out.push_back(PreparedRef{PreparedRefKind::ListAll, {}, {}});
    }
  }
}

}  // namespace

bool PreparedRef::name_exact(bool client_utf8) const {
  if (unicode_escapes) return false;
  return client_utf8 || std::none_of(name.begin(), name.end(), [](char c) { return (c & 0x80) != 0; });
}

std::vector<PreparedRef> prepared_statement_refs(std::string_view sql) {
  std::vector<PreparedRef> refs;
  SqlLexer lexer(sql, Reading::Standard);  // as routing::cursor_ref reads
  for (;;) {
    StatementReader reader(lexer, sql);
    const Token first = reader.next();
    if (first.kind == TokenKind::Word && word_is(first.text, "prepare")) {
      read_prepare(reader, refs);
    } else if (first.kind == TokenKind::Word && word_is(first.text, "deallocate")) {
      read_deallocate(reader, refs);
    } else if (first.kind != TokenKind::End) {
      read_other(first, reader, refs);
    }
    if (reader.text_ended() || lexer.error() != nullptr) break;
  }
  return refs;
}

std::string fold_identifier(std::string_view token) {
  std::string name;
  if (token.size() >= 2 && token.front() == '"' && token.back() == '"') {
    const std::string_view inner = token.substr(1, token.size() - 2);
    for (size_t i = 0; i < inner.size(); ++i) {
      name.push_back(inner[i]);
      if (inner[i] == '"' && i + 1 < inner.size() && inner[i + 1] == '"') ++i;  // "" stands for one "
    }
  } else {
    name.reserve(token.size());
    for (char c : token) name.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
  }
  if (name.size() > kMaxIdentifierBytes) {
    size_t cut = kMaxIdentifierBytes;
    // Never split a UTF-8 character: back up over continuation bytes (10xxxxxx).
    while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
    name.resize(cut);
  }
  return name;
}

std::string with_parameter_types(std::string_view prepare, std::string_view types) {
  const std::vector<PreparedRef> refs = prepared_statement_refs(prepare);
  if (types.empty() || refs.size() != 1 || refs.front().kind != PreparedRefKind::Prepare ||
      refs.front().types_at == std::string_view::npos) {
    return std::string(prepare);
  }
  const size_t at = static_cast<size_t>(refs.front().statement.data() - prepare.data()) + refs.front().types_at;
  std::string typed(prepare.substr(0, at));
  typed.append(" (").append(types).append(")").append(prepare.substr(at));
  return typed;
}

// Each type of pg_catalog as pg_catalog.name, quoted where it must be (format's %I): the same type whatever
// search_path the statement is prepared under later (a RESET ALL restarts the session log that replays the
// PREPARE's), and usable by any role. Array types by their own names (_int4), which SQL reads as well. Any other
// type is read as pg_catalog.unknown, which PostgreSQL infers again as if it were not listed: the name of a type
// of another schema may not resolve where the statement is prepared again (no USAGE on its schema, renamed since),
// where PostgreSQL keeps the type by its OID. NULL when no type is of pg_catalog: nothing to spell out.
// The name is a dollar-quoted literal whose tag it does not contain: no escape is read in it, whatever the client
// encoding, standard_conforming_strings or backslash_quote.
std::string parameter_types_query(std::string_view name) {
  // The literal ends at the first tag after its start: not one inside the name, nor one the name's end begins.
  const auto ends_early = [name](const std::string& tag) { return (std::string(name) + tag).find(tag) < name.size(); };
  std::string tag = "$pgmux$";
  for (int n = 0; ends_early(tag); ++n) tag = "$pgmux" + std::to_string(n) + "$";
  std::string sql =
      "SELECT CASE WHEN pg_catalog.bool_or(t.typnamespace OPERATOR(pg_catalog.=) "
      "'pg_catalog'::pg_catalog.regnamespace) THEN pg_catalog.string_agg(CASE WHEN t.typnamespace "
      "OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace THEN pg_catalog.format('pg_catalog.%I', "
      "t.typname) ELSE 'pg_catalog.unknown' END, ', ' ORDER BY u.ord) END "
      "FROM pg_catalog.pg_prepared_statements p, pg_catalog.unnest(p.parameter_types) WITH ORDINALITY AS u(type, ord), "
      "pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) u.type AND p.name OPERATOR(pg_catalog.=) ";
  sql.append(tag).append(name).append(tag);
  return sql;
}

}  // namespace pgmux::routing
