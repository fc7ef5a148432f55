#include "proxy/ops/http_message.hpp"

namespace pgmux::proxy {

namespace {

bool is_token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' ||
         c == '+' || c == '^' || c == '`' || c == '|' || c == '~';
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_token_char(c)) return false;
  }
  return true;
}

// Splits off the next line (without its CR LF or LF); false when there is none.
bool next_line(std::string_view& rest, std::string_view* line) {
  const size_t lf = rest.find('\n');
  if (lf == std::string_view::npos) return false;
  *line = rest.substr(0, lf);
  if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
  rest.remove_prefix(lf + 1);
  return true;
}

bool parse_request_line(std::string_view line, HttpRequestHead* out) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return false;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return false;
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method) || (version != "HTTP/1.1" && version != "HTTP/1.0")) return false;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.substr(0, scheme.size()) == scheme) {  // absolute form: keep the path
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  if (target.empty() || target.front() != '/') return false;
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  }
  out->method.assign(method);
  out->path.assign(target.substr(0, target.find_first_of("?#")));
  return true;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

}  // namespace

HttpParse parse_http_request_head(std::string_view data, size_t limit, HttpRequestHead* out) {
  // Blank lines before the request line are allowed (RFC 9112 2.2) but count against the limit.
  const size_t before = data.size();
  while (!data.empty() && (data.front() == '\r' || data.front() == '\n')) data.remove_prefix(1);
  const size_t skipped = before - data.size();
  if (skipped >= limit) return HttpParse::TooLarge;
  limit -= skipped;
  size_t end = data.find("\r\n\r\n");
  size_t end_size = 4;
  if (const size_t bare = data.find("\n\n");
      bare != std::string_view::npos && (end == std::string_view::npos || bare < end)) {
    end = bare;
    end_size = 2;
  }
  if (end == std::string_view::npos) {
    // Reject garbage as soon as the first line shows it, not only once the limit is hit.
    std::string_view rest = data, line;
    HttpRequestHead ignored;
    if (next_line(rest, &line) && !parse_request_line(line, &ignored)) return HttpParse::Malformed;
    return data.size() >= limit ? HttpParse::TooLarge : HttpParse::NeedMore;
  }
  if (end + end_size > limit) return HttpParse::TooLarge;
  std::string_view rest = data.substr(0, end + end_size);
  std::string_view line;
  if (!next_line(rest, &line) || !parse_request_line(line, out)) return HttpParse::Malformed;
  while (next_line(rest, &line) && !line.empty()) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return HttpParse::Malformed;
  }
  return HttpParse::Ok;
}

std::string http_response(int status, std::string_view content_type, std::string_view body,
                          std::string_view extra_headers) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
  out += "Content-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\nConnection: close\r\n";
  out += extra_headers;
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace pgmux::proxy
