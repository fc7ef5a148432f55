// WORK IN PROGRESS: the HTTP server is being written; until then metrics_listen binds nothing.
#include "proxy/metrics_http.hpp"

namespace pgmux::proxy {

struct MetricsHttpServer::Impl {};

MetricsHttpServer::MetricsHttpServer(Control&) : impl_(new Impl) {}
MetricsHttpServer::~MetricsHttpServer() { delete impl_; }
bool MetricsHttpServer::listen(const std::string&, uint16_t, std::string*) { return true; }
void MetricsHttpServer::close() {}

}  // namespace pgmux::proxy
