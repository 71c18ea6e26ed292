// The communicator of a sharded run (core/shard.h), under the names the analysis uses.
#pragma once
#include "core/shard.h"

namespace attnsparse::analysis {
using attnsparse::ShardComm;
using attnsparse::ShardFailure;
}  // namespace attnsparse::analysis
