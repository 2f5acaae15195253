#include "exporter/resource_groups.h"

#include <unordered_map>

namespace threadline {

std::vector<ResourceGroup> GroupByResource(std::span<const Span> spans) {
  std::vector<ResourceGroup> groups;
  // Resource object -> group index. Most batches hold a handful of processes, so the rare miss
  // compares attributes against every group linearly.
  std::unordered_map<const Resource*, size_t> index;
  for (const Span& span : spans) {
    const Resource* r = span.resource.get();
    auto it = index.find(r);
    if (it == index.end()) {
      size_t g = groups.size();
      if (r != nullptr) {
        for (size_t i = 0; i < groups.size(); ++i) {
          const Resource* other = groups[i].resource;
          if (other != nullptr && other->attributes == r->attributes) {
            g = i;
            break;
          }
        }
      }
      if (g == groups.size()) groups.push_back(ResourceGroup{.resource = r, .spans = {}});
      it = index.emplace(r, g).first;
    }
    groups[it->second].spans.push_back(&span);
  }
  return groups;
}

}  // namespace threadline
