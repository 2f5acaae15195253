#include "agent/common/curl.h"

#include <mutex>

namespace threadline {

bool CurlGlobalInit() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] { ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; });
  return ok;
}

bool CurlSlistAppend(CurlSlistPtr& list, const std::string& line) {
  curl_slist* head = curl_slist_append(list.get(), line.c_str());
  if (head == nullptr) return false;
  (void)list.release();  // now owned by `head`, the list's new first node
  list.reset(head);
  return true;
}

}  // namespace threadline
