// UTF-8 validity, for the encoders whose formats require it: OTLP JSON strings and protobuf
// `string` fields (receivers written in Go reject a whole request with one invalid string).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace threadline {

// Length of the valid UTF-8 sequence at the start of `s`, or 0 if it is not one (overlong
// forms, surrogates, code points above U+10FFFF and truncated sequences are invalid). `s` must
// not be empty.
size_t ValidUtf8Length(std::string_view s);

// `s` itself when it is valid UTF-8 (the common, ASCII-only case costs one pass); otherwise a
// copy in `scratch` with every byte that starts no valid sequence replaced by U+FFFD (as Go's
// encoders and our JSON writer do), and a view of that.
std::string_view ValidUtf8(std::string_view s, std::string& scratch);

}  // namespace threadline
