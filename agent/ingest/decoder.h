// Turns one raw ring-buffer record into a typed event and hands it to a sink. Records that are
// too short or of an unknown type are rejected (counted by the caller), never read past.
#pragma once

#include <cstdint>
#include <span>

#include "agent/ingest/event_types.h"

namespace threadline {

enum class DecodeStatus : uint8_t { kOk, kTooShort, kUnknownType, kBadLength };

std::string_view ToString(DecodeStatus s);

DecodeStatus DecodeEvent(std::span<const uint8_t> record, EventSink& sink);

}  // namespace threadline
