#include "conf/hba.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace pgmux::conf {

namespace {

bool listed(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool member_of(const std::vector<Group>& groups, std::string_view group, std::string_view user) {
  for (const Group& g : groups) {
    if (g.name == group && listed(g.members, user)) return true;
  }
  return false;
}

bool database_matches(const HbaRule& rule, const HbaRequest& request) {
  for (const std::string& d : rule.databases) {
    if (d == "all" || d == request.database || (d == "sameuser" && request.database == request.user)) return true;
  }
  return false;
}

bool user_matches(const HbaRule& rule, const std::vector<Group>& groups, const HbaRequest& request) {
  for (const std::string& u : rule.users) {
    if (u == "all" || u == request.user) return true;
    if (u.size() > 1 && u[0] == '+' && member_of(groups, std::string_view(u).substr(1), request.user)) return true;
  }
  return false;
}

bool connection_matches(HbaConnection connection, const HbaRequest& request) {
  switch (connection) {
    case HbaConnection::Host: return !request.local;
    case HbaConnection::HostSsl: return !request.local && request.tls;
    case HbaConnection::HostNoSsl: return !request.local && !request.tls;
    case HbaConnection::Local: return request.local;
  }
  return false;
}

}  // namespace

std::optional<std::array<uint8_t, 16>> parse_ip(std::string_view text) {
  const std::string s(text);
  std::array<uint8_t, 16> out{};
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = out[11] = 0xff;
    std::copy_n(reinterpret_cast<const uint8_t*>(&v4), 4, out.begin() + 12);
    return out;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) return out;
  return std::nullopt;
}

std::optional<Cidr> parse_cidr(std::string_view text) {
  if (text == "all") return Cidr{};
  const size_t slash = text.find('/');
  const std::string_view host = text.substr(0, slash);
  auto address = parse_ip(host);
  if (!address) return std::nullopt;
  const bool v4 = host.find(':') == std::string_view::npos;
  int bits = v4 ? 32 : 128;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || bits < 0 ||
        bits > (v4 ? 32 : 128)) {
      return std::nullopt;
    }
  }
  Cidr cidr{*address, v4 ? bits + 96 : bits};
  Cidr masked = cidr;
  for (int bit = cidr.prefix_bits; bit < 128; ++bit)
    masked.address[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  if (masked.address != cidr.address) return std::nullopt;  // host bits set past the prefix
  return cidr;
}

bool Cidr::contains(const std::array<uint8_t, 16>& other) const {
  for (int bit = 0; bit < prefix_bits; ++bit) {
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((address[bit / 8] & mask) != (other[bit / 8] & mask)) return false;
  }
  return true;
}

int match_hba(const std::vector<HbaRule>& rules, const std::vector<Group>& groups, const HbaRequest& request) {
  for (size_t i = 0; i < rules.size(); ++i) {
    const HbaRule& rule = rules[i];
    if (connection_matches(rule.connection, request) && (request.local || rule.address.contains(request.address)) &&
        database_matches(rule, request) && user_matches(rule, groups, request)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

const char* to_string(HbaConnection c) {
  switch (c) {
    case HbaConnection::Host: return "host";
    case HbaConnection::HostSsl: return "hostssl";
    case HbaConnection::HostNoSsl: return "hostnossl";
    case HbaConnection::Local: return "local";
  }
  return "?";
}

const char* to_string(HbaMethod m) {
  switch (m) {
    case HbaMethod::ScramSha256: return "scram-sha-256";
    case HbaMethod::Md5: return "md5";
    case HbaMethod::Cert: return "cert";
    case HbaMethod::Trust: return "trust";
    case HbaMethod::Reject: return "reject";
  }
  return "?";
}

std::optional<HbaConnection> parse_hba_connection(std::string_view text) {
  for (HbaConnection c :
       {HbaConnection::Host, HbaConnection::HostSsl, HbaConnection::HostNoSsl, HbaConnection::Local}) {
    if (text == to_string(c)) return c;
  }
  return std::nullopt;
}

std::optional<HbaMethod> parse_hba_method(std::string_view text) {
  for (HbaMethod m : {HbaMethod::ScramSha256, HbaMethod::Md5, HbaMethod::Cert, HbaMethod::Trust, HbaMethod::Reject}) {
    if (text == to_string(m)) return m;
  }
  return std::nullopt;
}

}  // namespace pgmux::conf
