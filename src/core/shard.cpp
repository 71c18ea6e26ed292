#include "core/shard.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace attnsparse {

using json = nlohmann::json;

ShardComm::Failure ShardComm::failure_of(const std::exception& e) {
  Failure f;
  f.failed = true;
  f.message = e.what();
  if (dynamic_cast<const UsageError*>(&e)) f.kind = 2;
  else if (dynamic_cast<const FormatError*>(&e)) f.kind = 1;
  else if (dynamic_cast<const Error*>(&e)) f.kind = 0;
  else f.kind = 3;
  return f;
}

void ShardComm::agree(const Failure& mine) {
  const json j = mine.failed ? json{{"kind", mine.kind}, {"message", mine.message}} : json::object();
  const std::vector<std::vector<uint8_t>> all = gather(json::to_cbor(j));
  json verdict = json::object();
  if (rank() == 0)
    for (const std::vector<uint8_t>& part : all) {
      json p = json::from_cbor(part);
      if (p.contains("message")) {
        verdict = std::move(p);
        break;
      }
    }
  const json agreed = json::from_cbor(broadcast(json::to_cbor(verdict)));
  if (!agreed.contains("message")) return;
  settled = true;
  const std::string message = agreed.at("message").get<std::string>();
  switch (agreed.at("kind").get<int>()) {
    case 1: throw FormatError(message);
    case 2: throw UsageError(message);
    default: throw Error(message);
  }
}

}  // namespace attnsparse
