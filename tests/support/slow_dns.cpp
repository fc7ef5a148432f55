// LD_PRELOAD for it_backend_hostname, a resolver the tests control:
// - "slow-dns.pgmux.test" takes 1 s and answers 127.0.0.1, as a slow DNS server would;
// - "moving.pgmux.test" answers the address written in the file $PGMUX_TEST_DNS_FILE (127.0.0.1 while the file is
//   missing or empty), read at each lookup, as a DNS name repointed by a failover would.
// Every other name goes to the real getaddrinfo.
#include <dlfcn.h>
#include <netdb.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

// The first line of $PGMUX_TEST_DNS_FILE into `out` (at most size - 1 bytes), or 127.0.0.1.
const char* moving_address(char* out, size_t size) {
  std::snprintf(out, size, "127.0.0.1");
  const char* path = std::getenv("PGMUX_TEST_DNS_FILE");
  FILE* f = path != nullptr ? std::fopen(path, "r") : nullptr;
  if (f == nullptr) return out;
  char line[64] = {};
  if (std::fgets(line, sizeof line, f) != nullptr) {
    line[std::strcspn(line, "\r\n")] = '\0';
    if (line[0] != '\0') std::snprintf(out, size, "%s", line);
  }
  std::fclose(f);
  return out;
}

}  // namespace

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  using Real = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
  static const Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "getaddrinfo"));
  if (node != nullptr && std::strcmp(node, "slow-dns.pgmux.test") == 0) {
    sleep(1);
    return real("127.0.0.1", service, hints, res);
  }
  if (node != nullptr && std::strcmp(node, "moving.pgmux.test") == 0) {
    char address[64];
    return real(moving_address(address, sizeof address), service, hints, res);
  }
  return real(node, service, hints, res);
}
