// Host name + port -> socket address.
#pragma once
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace pgmux::proxy {

// The same IPv4 or IPv6 address and port (what a connection to either reaches).
bool same_address(const sockaddr_storage& a, const sockaddr_storage& b);

// "10.0.0.5:5432", "[::1]:5432" (for log lines); "?" for another family.
std::string endpoint_text(const sockaddr& address);

// A numeric IPv4 or IPv6 address; false for anything else (no lookup).
bool numeric_address(const std::string& host, uint16_t port, sockaddr_storage* out);

// Numeric addresses need no lookup; names go through getaddrinfo, which blocks: only where nothing else waits
// (listeners and the metrics endpoint at startup). Workers take backend addresses from the prober's view.
bool resolve_address(const std::string& host, uint16_t port, sockaddr_storage* out, std::string* error);
// The same lookup, as the numeric text of its first address ("10.0.0.5", "::1").
bool resolve_to_numeric(const std::string& host, std::string* numeric, std::string* error);

}  // namespace pgmux::proxy
