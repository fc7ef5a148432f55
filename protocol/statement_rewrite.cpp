#include "protocol/statement_rewrite.hpp"

#include <cstring>
#include <limits>

#include "protocol/frontend_messages.hpp"

namespace pgmux::protocol {

namespace {

constexpr size_t kHeader = 5;  // tag + length

// Where a message names a statement. `offset` is from the start of the message (its tag).
struct StatementRef {
  bool names_statement = false;
  size_t offset = 0;
  size_t size = 0;          // name length, excluding the NUL
};

// Length of the NUL-terminated string at body[from], or npos when no NUL follows.
size_t cstring_length(ByteView body, size_t from) {
  if (from >= body.size()) return std::string_view::npos;
  const void* nul = std::memchr(body.data() + from, 0, body.size() - from);
  if (!nul) return std::string_view::npos;
  return size_t(static_cast<const std::byte*>(nul) - (body.data() + from));
}

StatementRef name_at(ByteView body, size_t from) {
  StatementRef ref;
  const size_t n = cstring_length(body, from);
  if (n == std::string_view::npos) return ref;
  ref.names_statement = true;
  ref.offset = kHeader + from;
  ref.size = n;
  return ref;
}

// Finds the statement name in one whole message. A message PostgreSQL cannot read names none: it is copied as it
// is, and the server answers it ERROR 08P01 before it looks the name up. What counts as unreadable is what the
// request scanner's decoders refuse (parse_parse whole, a Bind's two names, Describe and Close whole), so that
// the names asked for are those of the statement steps the scanner recorded.
StatementRef find_statement(char tag, ByteView body) {
  switch (tag) {
    case frontend::kParse:
      return parse_parse(body) ? name_at(body, 0) : StatementRef{};
    case frontend::kBind: {
      const size_t portal = cstring_length(body, 0);
      if (portal == std::string_view::npos) return {};
      return name_at(body, portal + 1);
    }
    case frontend::kDescribe:
    case frontend::kClose: {
      if (body.empty()) return {};
      const char kind = char(body[0]);
      if (kind != 'S') return {};  // a portal's name, or a kind PostgreSQL refuses
      StatementRef ref = name_at(body, 1);
      if (ref.names_statement && 1 + ref.size + 1 != body.size()) return {};  // trailing bytes
      return ref;
    }
    default:
      return {};
  }
}

// Length of the whole message at batch[pos], or 0 when the header is bad or the message is cut short.
// A zero tag is never a valid frontend message, and Frame::total() would read it as untagged: reject it
// so the rewriter and the framer never disagree on where messages end.
size_t whole_message_at(ByteView batch, size_t pos) {
  if (batch.size() - pos < kHeader || batch[pos] == std::byte{0}) return 0;
  const uint32_t length = load_be32(batch.data() + pos + 1);
  if (length < 4 || size_t(length) + 1 > batch.size() - pos) return 0;
  return size_t(length) + 1;
}

void store_be32(std::byte* p, uint32_t v) {
  p[0] = std::byte(v >> 24);
  p[1] = std::byte(v >> 16);
  p[2] = std::byte(v >> 8);
  p[3] = std::byte(v);
}

void append(ByteVector& out, ByteView bytes) { out.insert(out.end(), bytes.begin(), bytes.end()); }

}  // namespace

bool rewrite_statement_names(ByteView batch, const StatementRenamer& rename, ByteVector& out) {
  const size_t original_size = out.size();
  const auto fail = [&] {
    out.resize(original_size);
    return false;
  };
  // One pass: each message is checked as it is reached, and a bad one takes back what was written before it.
  // Unchanged bytes are copied in runs: `run_start` is where the pending run begins.
  size_t run_start = 0;
  size_t pos = 0;
  while (pos < batch.size()) {
    const size_t total = whole_message_at(batch, pos);
    if (total == 0) return fail();
    const StatementRef ref = find_statement(char(batch[pos]), batch.subspan(pos + kHeader, total - kHeader));
    pos += total;
    if (!ref.names_statement || ref.size == 0) continue;

    const size_t msg_start = pos - total;
    const std::string_view client_name = as_chars(batch.subspan(msg_start + ref.offset, ref.size));
    const std::optional<std::string_view> server_name = rename(client_name);
    if (!server_name) continue;
    if (server_name->empty() || server_name->find('\0') != std::string_view::npos) return fail();
    const uint64_t new_length = uint64_t(total - 1) - ref.size + server_name->size();
    if (new_length > uint64_t(std::numeric_limits<int32_t>::max())) return fail();

    append(out, batch.subspan(run_start, msg_start - run_start));
    const size_t header_at = out.size();
    append(out, batch.subspan(msg_start, ref.offset));  // tag, length, anything before the name
    store_be32(out.data() + header_at + 1, uint32_t(new_length));
    append(out, as_bytes(*server_name));
    run_start = msg_start + ref.offset + ref.size;  // the NUL and everything after it stay as they were
  }
  append(out, batch.subspan(run_start));
  return true;
}

}  // namespace pgmux::protocol
