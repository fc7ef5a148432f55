// LD_PRELOAD for it_backend_hostname: getaddrinfo of "slow-dns.pgmux.test" takes 1 s and answers 127.0.0.1, as a
// slow DNS server would. Every other name goes to the real getaddrinfo.
#include <dlfcn.h>
#include <netdb.h>
#include <unistd.h>

#include <cstring>

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  using Real = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
  static const Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "getaddrinfo"));
  if (node != nullptr && std::strcmp(node, "slow-dns.pgmux.test") == 0) {
    sleep(1);
    return real("127.0.0.1", service, hints, res);
  }
  return real(node, service, hints, res);
}
