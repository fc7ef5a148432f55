// A new connection's first packets: framed as the postmaster frames them, then parsed with every combination of
// the encryption requests already declined. The parameters found must be the ones StartupMessage::find serves.
#include <cstdlib>
#include <variant>

#include "protocol/framer.hpp"
#include "protocol/startup.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace pgmux::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const EncryptionRequestsDone done{(data[0] & 1) != 0, (data[0] & 2) != 0};
  // The packet as given (parse_startup_packet reads the length word itself)...
  const ByteView packet = pgmux::fuzz::as_bytes(data + 1, size - 1);
  if (packet.size() >= 4) (void)parse_startup_packet(packet, done);
  // ...and the stream as the connection reads it, packet after packet.
  ByteView stream = packet;
  while (true) {
    const Frame frame = next_startup_frame(stream);
    if (frame.status != FrameStatus::Frame) break;
    const StartupPacket parsed = parse_startup_packet(stream.subspan(0, frame.total()), done);
    if (const auto* startup = std::get_if<StartupMessage>(&parsed)) {
      for (const auto& [name, value] : startup->parameters) {
        if (startup->find(name) == nullptr) std::abort();  // every parameter read can be found again
      }
    }
    stream = stream.subspan(frame.total());
  }
  return 0;
}
