// The chat room in the control API: the JSON of messages, their states and events, and its
// methods (chat.send, chat.wait, chat.history, chat.read).
#pragma once

#include "node/api/control_server.h"
#include "node/chat/chat.h"

#include <nlohmann/json.hpp>
#include <vector>

namespace parley::node::api {

nlohmann::json toJson(const ChatRecord& message);
nlohmann::json toJson(const std::vector<ChatRecord>& messages);
nlohmann::json toJson(const ChatEvent& event); // {"type": "chat.message" or "chat.state", ...}
nlohmann::json toJson(const SendResult& result);
nlohmann::json toJson(const WaitResult& result);

void registerChatMethods(ControlServer& control, ChatManager& chat);

} // namespace parley::node::api
