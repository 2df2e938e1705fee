// Fuzz target: chat frames from a contact's control stream (msg, ack, read), and what the chat
// layer does with a message's text before storing and showing it.
#include "dht/records.h"
#include "node/chat/chat.h"
#include "node/link/frame.h"

#include <cstdint>

using namespace parley::node;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    wire::Message message;
    if (wire::decodeMessage({data, size}, message) != wire::FrameError::ok)
        return 0;
    if (auto* m = std::get_if<wire::ChatMessage>(&message)) {
        if (m->seq == 0 || m->text.size() > wire::kMaxChatTextSize)
            __builtin_trap();
        auto repaired = repairUtf8(m->text);
        if (!parley::dht::isValidUtf8(repaired) || repairUtf8(repaired) != repaired)
            __builtin_trap();
        if (parley::dht::isValidUtf8(m->text) && repaired != m->text)
            __builtin_trap();
    } else if (auto* a = std::get_if<wire::ChatAck>(&message)) {
        if (a->ids.size() > wire::kMaxIdsPerFrame)
            __builtin_trap();
    } else if (auto* r = std::get_if<wire::ChatRead>(&message)) {
        if (r->ids.size() > wire::kMaxIdsPerFrame)
            __builtin_trap();
    }
    wire::Message again;
    if (wire::decodeMessage(wire::encodeMessage(message), again) != wire::FrameError::ok ||
        !(again == message))
        __builtin_trap();
    return 0;
}
