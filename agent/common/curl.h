// libcurl ownership for the agent's HTTP clients (OTLP/HTTP export, the Kubernetes API client):
// handles in unique_ptrs, the header list grown without leaking, curl_global_init once.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <memory>
#include <string>

namespace threadline {

struct CurlEasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct CurlSlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyDeleter>;
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistDeleter>;

// curl_global_init(CURL_GLOBAL_DEFAULT), done once per process (curl's own call is not
// thread-safe); false when it failed.
bool CurlGlobalInit();

// Sockets the agent's own HTTP clients have opened so far (counted by CurlCountOwnSockets'
// callback as curl creates each one, before it connects). OwnSockets lists our sockets again when
// this moved, whatever its rate limit: a new export connection to a traced collector on this
// node must be known as ours before the collector's accept of it is looked at.
uint64_t OwnClientSocketsOpened();
void NoteOwnClientSocketOpened();
// Has `c` count every socket it opens (CURLOPT_SOCKOPTFUNCTION); false when curl refused.
bool CurlCountOwnSockets(CURL* c);

// Appends `line` ("Name: value") to `list`; false when curl is out of memory (list unchanged).
bool CurlSlistAppend(CurlSlistPtr& list, const std::string& line);

}  // namespace threadline
