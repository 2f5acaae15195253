// Spans grouped by the resource (process) that produced them: OTLP nests spans under
// ResourceSpans, so every encoder (protobuf, JSON lines) first splits a batch this way.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "agent/spans/span.h"

namespace threadline {

struct ResourceGroup {
  const Resource* resource = nullptr;  // the first span's resource; nullptr: none known
  std::vector<const Span*> spans;      // in input order
};

// Groups by pointer identity of Span::resource, and merges groups whose resources are distinct
// objects with equal attributes (the same process described twice, e.g. after a cache
// refresh). Groups come in order of first appearance. Spans without a resource form one group
// with resource == nullptr. The returned pointers point into `spans`.
std::vector<ResourceGroup> GroupByResource(std::span<const Span> spans);

// The same grouping over items known only by their resources (`resources[i]` is item i's):
// each group's resource and the indices of its items, in input order.
struct ResourceIndexGroup {
  const Resource* resource = nullptr;
  std::vector<uint32_t> items;
};
std::vector<ResourceIndexGroup> GroupIndicesByResource(std::span<const Resource* const> resources);

}  // namespace threadline
