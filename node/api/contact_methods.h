// The contacts room in the control API: its JSON (commands' answers, listings, events,
// counters) and its methods (contact.add, contact.accept, ..., contacts).
#pragma once

#include "node/api/control_server.h"
#include "node/api/params.h"
#include "node/contacts/contacts.h"

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace parley::node::api {

nlohmann::json toJson(const ContactEvent& event); // {"type": "contact.<kind>", ...}
nlohmann::json toJson(const AddResult& result);
nlohmann::json toJson(const std::vector<ContactSummary>& contacts);
nlohmann::json requestsJson(const std::vector<ContactRecord>& requests);

// contact.add, contact.requests, contacts, contact.{accept,decline,block,unblock,remove}.
void registerContactMethods(ControlServer& control, ContactManager& contacts);

} // namespace parley::node::api
