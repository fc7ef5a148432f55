// systemd's readiness protocol (sd_notify(3)) without libsystemd: under a Type=notify unit, systemd passes a unix
// datagram socket in $NOTIFY_SOCKET and waits for "READY=1" before it counts the service as started (and starts
// the units ordered after it). pgmux says READY=1 once its listeners are bound and its workers run,
// RELOADING=1 ... READY=1 around a SIGHUP reload, and STOPPING=1 when it begins to shut down.
#pragma once
#include <string>
#include <string_view>

namespace pgmux::proxy {

// Sends `state` ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET: a path, or "@name" for the abstract namespace.
// Returns false, with *error set, when the socket is named but the datagram could not be sent; true when it was
// sent or there is no $NOTIFY_SOCKET (not run by systemd).
bool sd_notify_state(std::string_view state, std::string* error = nullptr);

// "RELOADING=1\nMONOTONIC_USEC=<now>", as systemd's Type=notify-reload asks for.
std::string sd_reloading_state();

}  // namespace pgmux::proxy
