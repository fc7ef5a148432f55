// Access rules (pg_hba.conf for pgmux): an ordered list, the first rule that matches a connection decides how it
// authenticates or whether it is rejected; no match rejects. Pure data and matching, no I/O: the client
// connection asks with what it knows after the startup packet (address, TLS, user, database).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::conf {

// Local: a Unix-domain socket (PostgreSQL's "local" lines); the host kinds match TCP connections only.
enum class HbaConnection { Host, HostSsl, HostNoSsl, Local };
enum class HbaMethod { ScramSha256, Md5, Cert, Trust, Reject };

// An IPv4 or IPv6 network. IPv4 addresses are held as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one comparison
// serves both and an IPv4 rule matches a client that reached an IPv6 listener through a mapped address.
struct Cidr {
  std::array<uint8_t, 16> address{};
  int prefix_bits = 0;  // of the 128; "all" is ::/0
  bool contains(const std::array<uint8_t, 16>& other) const;
  bool operator==(const Cidr&) const = default;
};
// "10.0.0.0/8", "::1/128", "192.168.1.7" (a host: /32 or /128), "all". nullopt when malformed, or when bits are
// set past the prefix ("10.0.0.1/8": PostgreSQL accepts it; here it is refused as the likely typo it is).
std::optional<Cidr> parse_cidr(std::string_view text);
// A client's address text as libuv prints it ("127.0.0.1", "::1"), in Cidr's form.
std::optional<std::array<uint8_t, 16>> parse_ip(std::string_view text);

struct HbaRule {
  HbaConnection connection = HbaConnection::Host;
  std::vector<std::string> databases;  // "all", "sameuser", or names
  std::vector<std::string> users;      // "all", "+group", or names
  Cidr address;  // "all" for a local rule
  HbaMethod method = HbaMethod::Reject;
  bool operator==(const HbaRule&) const = default;
};

// Role groups for "+group" in a rule: a group's members are user names (groups do not nest).
struct Group {
  std::string name;
  std::vector<std::string> members;
  bool operator==(const Group&) const = default;
};

struct HbaRequest {
  bool tls = false;
  std::array<uint8_t, 16> address{};
  std::string_view user;
  std::string_view database;
  bool local = false;  // over a Unix-domain socket: no address, no TLS
};

// Index of the first rule matching `request`, or -1.
int match_hba(const std::vector<HbaRule>& rules, const std::vector<Group>& groups, const HbaRequest& request);

const char* to_string(HbaConnection c);  // "host", "hostssl", "hostnossl", "local"
const char* to_string(HbaMethod m);      // "scram-sha-256", "md5", "cert", "trust", "reject"
std::optional<HbaConnection> parse_hba_connection(std::string_view text);
std::optional<HbaMethod> parse_hba_method(std::string_view text);

}  // namespace pgmux::conf
