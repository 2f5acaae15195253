// Cheap HTTP/1.x detection from the first bytes of a stream, before a parser is attached.
//
// True only when the bytes are, as far as they go, a request line / status line: a known
// method followed by SP, or any method token whose whole line is present and ends in
// " HTTP/1.x". "PRI * HTTP/2.0" (the HTTP/2 preface) and TLS records are not HTTP/1.
#pragma once

#include <cstdint>
#include <span>

namespace threadline::http1 {

bool LooksLikeHttp1Request(std::span<const uint8_t> first_bytes);
bool LooksLikeHttp1Response(std::span<const uint8_t> first_bytes);

}  // namespace threadline::http1
