#include "exporter/resource_groups.h"

#include <unordered_map>

namespace threadline {

std::vector<ResourceIndexGroup> GroupIndicesByResource(std::span<const Resource* const> resources) {
  std::vector<ResourceIndexGroup> groups;
  // Resource object -> group index. Most batches hold a handful of processes, so the rare miss
  // compares attributes against every group linearly.
  std::unordered_map<const Resource*, size_t> index;
  for (size_t i = 0; i < resources.size(); ++i) {
    const Resource* r = resources[i];
    auto it = index.find(r);
    if (it == index.end()) {
      size_t g = groups.size();
      if (r != nullptr) {
        for (size_t j = 0; j < groups.size(); ++j) {
          const Resource* other = groups[j].resource;
          if (other != nullptr && other->attributes == r->attributes) {
            g = j;
            break;
          }
        }
      }
      if (g == groups.size()) {
        groups.push_back(ResourceIndexGroup{.resource = r, .items = {}});
        groups.back().items.reserve(resources.size() - i);  // one allocation per group
      }
      it = index.emplace(r, g).first;
    }
    groups[it->second].items.push_back(static_cast<uint32_t>(i));
  }
  return groups;
}

std::vector<ResourceGroup> GroupByResource(std::span<const Span> spans) {
  std::vector<const Resource*> resources;
  resources.reserve(spans.size());
  for (const Span& span : spans) resources.push_back(span.resource.get());
  std::vector<ResourceGroup> groups;
  for (ResourceIndexGroup& g : GroupIndicesByResource(resources)) {
    ResourceGroup& out = groups.emplace_back(ResourceGroup{.resource = g.resource, .spans = {}});
    out.spans.reserve(g.items.size());
    for (uint32_t i : g.items) out.spans.push_back(&spans[i]);
  }
  return groups;
}

}  // namespace threadline
