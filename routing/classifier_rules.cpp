#include "routing/classifier_rules.hpp"

#include <array>
#include <cstdint>

namespace pgmux::routing {
namespace {

// currval and lastval read what nextval did in this session, on the primary. pg_backend_pid and
// pg_listening_channels read the session's identity, which lives on its primary connection (in session
// pooling the client's BackendKeyData carries that connection's pid).
constexpr std::array<std::string_view, 28> kWriteFunctions = {
    "nextval", "setval", "currval", "lastval",
    "lo_create", "lo_creat", "lo_import", "lo_unlink", "lo_put", "lo_from_bytea", "lowrite",
    "lo_truncate", "lo_truncate64",
    "pg_notify", "set_config",
    "txid_current", "pg_current_xact_id",  // assign a transaction id
    "pg_switch_wal", "pg_create_restore_point",
    "pg_terminate_backend", "pg_cancel_backend", "pg_backend_pid", "pg_listening_channels",
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
    "pg_logical_emit_message", "pg_import_system_collations",
};

constexpr std::array<std::string_view, 4> kSessionLocks = {
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
};

// Most calls are of none of these: one bit per (length, first byte) class of the names above (and of the
// advisory lock functions, 16 to 32 bytes long) rejects them before any comparison.
constexpr size_t builtin_bit(size_t length, char first) {
  return (length * 31 + static_cast<unsigned char>(first)) % 256;
}

constexpr std::array<uint64_t, 4> builtin_filter() {
  std::array<uint64_t, 4> mask{};
  auto set = [&mask](size_t length, char first) {
    const size_t bit = builtin_bit(length, first);
    mask[bit / 64] |= uint64_t{1} << (bit % 64);
  };
  for (std::string_view f : kWriteFunctions) set(f.size(), f.front());
  for (size_t length = 16; length <= 32; ++length) set(length, 'p');
  return mask;
}

constexpr std::array<uint64_t, 4> kBuiltinFilter = builtin_filter();

constexpr std::array<std::string_view, 9> kCatalogObjects = {
    "function", "procedure", "routine", "aggregate", "view", "rule", "extension", "schema", "language",
};

constexpr std::string_view kTempSchemaAlias = "pg_temp";

// What may follow "pg_temp" in the temporary schema's name: nothing (the alias), or _<n> (its real name).
bool is_temp_schema_suffix(std::string_view rest) {
  if (rest.empty()) return true;
  return rest.size() > 1 && rest[0] == '_' && rest.find_first_not_of("0123456789", 1) == std::string_view::npos;
}

}  // namespace

bool is_temp_schema_name(std::string_view name) {
  return name.substr(0, kTempSchemaAlias.size()) == kTempSchemaAlias &&
         is_temp_schema_suffix(name.substr(kTempSchemaAlias.size()));
}

bool is_temp_schema_token(const Token& token) {
  const std::string_view text = token.text;
  if (token.kind == TokenKind::QuotedIdent) {
    if (text.front() != '"') return true;  // U&"..."
    return is_temp_schema_name(text.substr(1, text.size() - 2));
  }
  if (token.kind != TokenKind::Word || text.size() < kTempSchemaAlias.size() || (text[0] | 0x20) != 'p') return false;
  // Unquoted, so case folds; digits and '_' do not.
  return word_is(text.substr(0, kTempSchemaAlias.size()), kTempSchemaAlias) &&
         is_temp_schema_suffix(text.substr(kTempSchemaAlias.size()));
}

bool is_settings_view_token(const Token& token) {
  if (token.kind == TokenKind::QuotedIdent) return token.text == "\"pg_settings\"";
  return token.kind == TokenKind::Word && word_is(token.text, "pg_settings");
}

bool is_setting(const Token& token, std::string_view name) {
  const std::string_view t = token.text;
  if (token.kind == TokenKind::Word) return word_is(t, name);
  return token.kind == TokenKind::QuotedIdent && t.size() == name.size() + 2 && t.front() == '"' &&
         word_is(t.substr(1, name.size()), name);
}

std::string_view identifier_name(const Token& t, std::array<char, kNameMax>& buf) {
  if (t.kind == TokenKind::Word) {
    const size_t n = t.text.size() < kNameMax ? t.text.size() : kNameMax;
    for (size_t i = 0; i < n; ++i) {
      const char c = t.text[i];
      buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    return std::string_view(buf.data(), n);
  }
  const std::string_view text = t.text;
  if (t.kind != TokenKind::QuotedIdent || text.size() < 2 || text.front() != '"') return {};
  return text.substr(1, text.size() - 2);
}

bool mentions_temp_schema(std::string_view literal) {
  for (size_t at = 0; at + kTempSchemaAlias.size() <= literal.size(); ++at) {
    if (word_is(literal.substr(at, kTempSchemaAlias.size()), kTempSchemaAlias)) return true;
  }
  return false;
}

bool is_catalog_object_word(std::string_view word) {
  for (std::string_view w : kCatalogObjects) {
    if (word == w) return true;
  }
  return false;
}

bool is_builtin_write_function(std::string_view name, bool* session_lock) {
  if (name.empty()) return false;
  const size_t bit = builtin_bit(name.size(), name.front());
  if ((kBuiltinFilter[bit / 64] & (uint64_t{1} << (bit % 64))) == 0) return false;
  // Every advisory lock function (lock, try, xact, unlock) changes lock state held on one server.
  if (name.starts_with("pg_advisory_") || name.starts_with("pg_try_advisory_")) {
    if (session_lock != nullptr) {
      for (std::string_view s : kSessionLocks) {
        if (name == s) *session_lock = true;
      }
    }
    return true;
  }
  for (std::string_view f : kWriteFunctions) {
    if (name == f) return true;
  }
  return false;
}

void StatementCombiner::add(const Classification& c) {
  if (c.kind == StatementKind::Empty) return;
  if (count_++ == 0) first_ = c;
  facts_.add_facts(c);
  if (c.primary_only && primary_only_ == nullptr) primary_only_ = c.reason;
  switch (c.kind) {
    case StatementKind::Write:
      if (write_reason_ == nullptr) write_reason_ = c.reason;
      break;
    case StatementKind::Session:
      any_session_ = true;
      session_read_only_ = session_read_only_ || c.read_only;
      session_read_write_ = session_read_write_ || c.read_write;
      break;
    case StatementKind::TxBegin:
    case StatementKind::TxEnd:
      if (!any_tx_) first_tx_ = c.kind;
      any_tx_ = true;
      last_tx_ = c;
      any_other_ = true;
      break;
    default:
      any_other_ = true;
      break;
  }
}

Classification StatementCombiner::result() const {
  Classification out;
  if (count_ == 0) {
    out.kind = StatementKind::Empty;
    out.reason = "empty";
    return out;
  }
  if (count_ == 1) return first_;
  out.multi_statement = true;
  out.add_facts(facts_);
  if (write_reason_ != nullptr || primary_only_ != nullptr) {
    out.kind = StatementKind::Write;
    out.reason = write_reason_ != nullptr ? write_reason_ : primary_only_;
  } else if (any_session_ && !any_other_) {
    out.kind = StatementKind::Session;
    out.read_only = session_read_only_;
    out.read_write = session_read_write_;
    out.reason = "session commands";
  } else if (any_session_) {
    out.kind = StatementKind::Write;
    out.reason = "multi-statement with session command";
  } else if (any_tx_ && last_tx_.kind == StatementKind::TxBegin) {
    out.kind = StatementKind::TxBegin;
    out.read_only = last_tx_.read_only;
    out.read_write = last_tx_.read_write;
    out.reason = "multi-statement opening a transaction";
  } else if (any_tx_ && first_tx_ == StatementKind::TxEnd) {
    out.kind = StatementKind::TxEnd;
    out.reason = "multi-statement ending a transaction";
  } else {
    out.kind = StatementKind::Read;
    out.reason = any_tx_ ? "transaction block of reads" : "multi-statement read";
  }
  return out;
}

}  // namespace pgmux::routing
