// HTTP/1.x as a Protocol (protocols/protocol.h): detection (detect.h), both directions' parsers
// and the pairing of requests with responses (stitcher.h), and the neutral views of what they
// produce. The Exchange itself rides in the Record for Describe (describe.h).
#pragma once

#include <memory>
#include <span>
#include <string_view>

#include "agent/protocols/protocol.h"

namespace threadline::http1 {

std::unique_ptr<Protocol> CreateProtocol(const ProtocolOptions& options, MetricsRegistry& metrics);

// A message's header fields as a trace carrier.
class HeaderCarrier final : public CarrierReader {
 public:
  explicit HeaderCarrier(const HeaderList& headers) : headers_(headers) {}
  size_t Values(std::string_view key, std::span<std::string_view> out) const override;
  void FirstValues(std::span<const std::string_view> keys, std::span<std::string_view> out) const override;

 private:
  const HeaderList& headers_;
};

// The neutral view of a whole request; `carrier` must read `request`'s headers and outlive the
// view.
RequestView ViewOf(const Message& request, const HeaderCarrier& carrier);

}  // namespace threadline::http1
