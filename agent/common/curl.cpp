#include "agent/common/curl.h"

#include <atomic>
#include <mutex>

namespace threadline {

bool CurlGlobalInit() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] { ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; });
  return ok;
}

namespace {
std::atomic<uint64_t> own_client_sockets{0};

int OnSocketOpened(void*, curl_socket_t, curlsocktype) {
  NoteOwnClientSocketOpened();
  return CURL_SOCKOPT_OK;
}
}  // namespace

uint64_t OwnClientSocketsOpened() { return own_client_sockets.load(std::memory_order_acquire); }
void NoteOwnClientSocketOpened() { own_client_sockets.fetch_add(1, std::memory_order_acq_rel); }

bool CurlCountOwnSockets(CURL* c) {
  return curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, &OnSocketOpened) == CURLE_OK;
}

bool CurlSlistAppend(CurlSlistPtr& list, const std::string& line) {
  curl_slist* head = curl_slist_append(list.get(), line.c_str());
  if (head == nullptr) return false;
  (void)list.release();  // now owned by `head`, the list's new first node
  list.reset(head);
  return true;
}

}  // namespace threadline
