#include "agent/protocols/http2/hpack.h"

#include <array>
#include <vector>

#include "agent/protocols/http2/huffman_table.h"

namespace threadline::http2 {

namespace {

struct StaticEntry {
  std::string_view name;
  std::string_view value;
};

// RFC 7541 Appendix A.
constexpr std::array<StaticEntry, 61> kStaticTable = {{
    {":authority", ""},
    {":method", "GET"},
    {":method", "POST"},
    {":path", "/"},
    {":path", "/index.html"},
    {":scheme", "http"},
    {":scheme", "https"},
    {":status", "200"},
    {":status", "204"},
    {":status", "206"},
    {":status", "304"},
    {":status", "400"},
    {":status", "404"},
    {":status", "500"},
    {"accept-charset", ""},
    {"accept-encoding", "gzip, deflate"},
    {"accept-language", ""},
    {"accept-ranges", ""},
    {"accept", ""},
    {"access-control-allow-origin", ""},
    {"age", ""},
    {"allow", ""},
    {"authorization", ""},
    {"cache-control", ""},
    {"content-disposition", ""},
    {"content-encoding", ""},
    {"content-language", ""},
    {"content-length", ""},
    {"content-location", ""},
    {"content-range", ""},
    {"content-type", ""},
    {"cookie", ""},
    {"date", ""},
    {"etag", ""},
    {"expect", ""},
    {"expires", ""},
    {"from", ""},
    {"host", ""},
    {"if-match", ""},
    {"if-modified-since", ""},
    {"if-none-match", ""},
    {"if-range", ""},
    {"if-unmodified-since", ""},
    {"last-modified", ""},
    {"link", ""},
    {"location", ""},
    {"max-forwards", ""},
    {"proxy-authenticate", ""},
    {"proxy-authorization", ""},
    {"range", ""},
    {"referer", ""},
    {"refresh", ""},
    {"retry-after", ""},
    {"server", ""},
    {"set-cookie", ""},
    {"strict-transport-security", ""},
    {"transfer-encoding", ""},
    {"user-agent", ""},
    {"vary", ""},
    {"via", ""},
    {"www-authenticate", ""},
}};

constexpr size_t kEntryOverhead = 32;  // RFC 7541 §4.1

// The Huffman code as a binary tree walked bit by bit: node 0 is the root; children[b] > 0 is a
// node, < 0 is -(symbol + 1), 0 is "no code" (invalid).
struct HuffmanTree {
  struct Node {
    int32_t children[2] = {0, 0};
  };
  std::vector<Node> nodes;

  HuffmanTree() {
    nodes.emplace_back();
    for (size_t sym = 0; sym < kHuffmanCodes.size(); ++sym) {
      const HuffmanCode c = kHuffmanCodes[sym];
      size_t at = 0;
      for (int bit = c.bits - 1; bit >= 0; --bit) {
        const int b = (c.code >> bit) & 1;
        if (bit == 0) {
          nodes[at].children[b] = -static_cast<int32_t>(sym) - 1;
        } else {
          if (nodes[at].children[b] == 0) {
            nodes[at].children[b] = static_cast<int32_t>(nodes.size());
            nodes.emplace_back();
          }
          at = static_cast<size_t>(nodes[at].children[b]);
        }
      }
    }
  }
};

const HuffmanTree& Tree() {
  static const HuffmanTree tree;
  return tree;
}

// RFC 7541 §5.1: an integer with an N-bit prefix. False when truncated or over 2^32.
bool ReadInteger(std::span<const uint8_t> in, size_t& at, int prefix_bits, uint64_t& value,
                 HpackError& error) {
  if (at >= in.size()) {
    error = HpackError::kTruncated;
    return false;
  }
  const uint8_t mask = static_cast<uint8_t>((1u << prefix_bits) - 1);
  value = in[at++] & mask;
  if (value < mask) return true;
  for (int shift = 0;; shift += 7) {
    if (at >= in.size()) {
      error = HpackError::kTruncated;
      return false;
    }
    const uint8_t b = in[at++];
    if (shift > 28) {
      error = HpackError::kBadInteger;
      return false;
    }
    value += static_cast<uint64_t>(b & 0x7f) << shift;
    if (value > 0xffffffffull) {
      error = HpackError::kBadInteger;
      return false;
    }
    if ((b & 0x80) == 0) return true;
  }
}

// RFC 7541 §5.2: a string literal into `scratch` (Huffman) or as a view into `in`.
bool ReadString(std::span<const uint8_t> in, size_t& at, std::string& scratch,
                std::string_view& out, HpackError& error) {
  if (at >= in.size()) {
    error = HpackError::kTruncated;
    return false;
  }
  const bool huffman = (in[at] & 0x80) != 0;
  uint64_t len = 0;
  if (!ReadInteger(in, at, 7, len, error)) return false;
  if (len > in.size() - at) {
    error = HpackError::kTruncated;
    return false;
  }
  const auto bytes = in.subspan(at, static_cast<size_t>(len));
  at += static_cast<size_t>(len);
  if (!huffman) {
    out = std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return true;
  }
  scratch.clear();
  if (!HuffmanDecode(bytes, scratch)) {
    error = HpackError::kBadHuffman;
    return false;
  }
  out = scratch;
  return true;
}

}  // namespace

std::string_view ToString(HpackError e) {
  switch (e) {
    case HpackError::kNone: return "none";
    case HpackError::kTruncated: return "hpack_truncated";
    case HpackError::kBadInteger: return "hpack_bad_integer";
    case HpackError::kBadIndex: return "hpack_bad_index";
    case HpackError::kBadHuffman: return "hpack_bad_huffman";
    case HpackError::kStringTooLong: return "hpack_string_too_long";
  }
  return "unknown";
}

bool HuffmanDecode(std::span<const uint8_t> in, std::string& out) {
  const HuffmanTree& tree = Tree();
  size_t at = 0;
  int depth = 0;      // bits consumed since the last symbol
  bool all_ones = true;  // those bits were all 1 (a prefix of EOS)
  for (uint8_t byte : in) {
    for (int bit = 7; bit >= 0; --bit) {
      const int b = (byte >> bit) & 1;
      const int32_t next = tree.nodes[at].children[b];
      if (next == 0) return false;
      ++depth;
      all_ones = all_ones && b == 1;
      if (next < 0) {
        const int32_t sym = -next - 1;
        if (sym == 256) return false;  // EOS inside a string
        out.push_back(static_cast<char>(sym));
        at = 0;
        depth = 0;
        all_ones = true;
      } else {
        at = static_cast<size_t>(next);
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
  return depth < 8 && all_ones;
}

HpackDecoder::HpackDecoder(size_t max_table_bytes) : max_table_bytes_(max_table_bytes) {
  if (limit_ > max_table_bytes_) limit_ = max_table_bytes_;
}

HpackDecoder::Lookup HpackDecoder::Find(uint64_t index, std::string_view& name,
                                        std::string_view& value, bool& name_known,
                                        bool& value_known) const {
  name_known = value_known = true;
  if (index == 0) return Lookup::kInvalid;
  if (index <= kStaticTable.size()) {
    name = kStaticTable[index - 1].name;
    value = kStaticTable[index - 1].value;
    return Lookup::kFound;
  }
  const uint64_t k = index - kStaticTable.size() - 1;
  if (k < entries_.size()) {
    const Entry& e = entries_[static_cast<size_t>(k)];
    name = e.name;
    value = e.value;
    name_known = e.name_known;
    value_known = e.value_known;
    return Lookup::kFound;
  }
  // Past what we hold: an entry from before we could follow the table, or one evicted by our
  // cap but not by the peer's larger table.
  return unknown_past_ ? Lookup::kUnknown : Lookup::kInvalid;
}

void HpackDecoder::Evict(size_t need) {
  while (!entries_.empty() && table_bytes_ + need > limit_) {
    const Entry& e = entries_.back();
    table_bytes_ -= e.name.size() + e.value.size() + kEntryOverhead;
    entries_.pop_back();
  }
}

void HpackDecoder::Insert(std::string_view name, std::string_view value, bool name_known,
                          bool value_known) {
  const size_t size = name.size() + value.size() + kEntryOverhead;
  if (size > limit_) {
    // RFC 7541 §4.4: an entry larger than the table empties it and is not added.
    entries_.clear();
    table_bytes_ = 0;
    return;
  }
  // Copied first: the name may be a view of an entry that the eviction removes.
  Entry e{std::string(name), std::string(value), name_known, value_known};
  Evict(size);
  entries_.push_front(std::move(e));
  table_bytes_ += size;
}

void HpackDecoder::SetLimit(uint64_t bytes) {
  if (bytes > max_table_bytes_) {
    // Followed only up to our cap: entries the peer still holds past it are forgotten, so
    // references to them come out unknown.
    bytes = max_table_bytes_;
    unknown_past_ = true;
  }
  limit_ = static_cast<size_t>(bytes);
  Evict(0);
}

void HpackDecoder::LoseBlock() {
  unknown_past_ = true;
  // Its insertions pushed our entries to higher indexes by an unknown amount: none can be
  // trusted any more.
  entries_.clear();
  table_bytes_ = 0;
}

HpackError HpackDecoder::Decode(std::span<const uint8_t> in, FieldSink& sink) {
  HpackError error = HpackError::kNone;
  size_t at = 0;
  auto fail = [&](HpackError e) {
    LoseBlock();
    return e;
  };
  while (at < in.size()) {
    const uint8_t b = in[at];
    if (b & 0x80) {  // §6.1 indexed header field
      uint64_t index = 0;
      if (!ReadInteger(in, at, 7, index, error)) return fail(error);
      std::string_view name, value;
      bool nk = true, vk = true;
      switch (Find(index, name, value, nk, vk)) {
        case Lookup::kFound:
          sink.OnField(nk ? name : std::string_view(), vk ? value : std::string_view(), nk && vk);
          break;
        case Lookup::kUnknown:
          sink.OnField({}, {}, false);
          break;
        case Lookup::kInvalid:
          return fail(HpackError::kBadIndex);
      }
      continue;
    }
    if ((b & 0xe0) == 0x20) {  // §6.3 dynamic table size update
      uint64_t size = 0;
      if (!ReadInteger(in, at, 5, size, error)) return fail(error);
      SetLimit(size);
      continue;
    }
    // §6.2 literal: with incremental indexing (01), without indexing (0000), never (0001).
    const bool indexing = (b & 0xc0) == 0x40;
    const int prefix = indexing ? 6 : 4;
    uint64_t name_index = 0;
    if (!ReadInteger(in, at, prefix, name_index, error)) return fail(error);
    std::string_view name, value, unused;
    bool name_known = true, unused_known = true;
    if (name_index == 0) {
      if (!ReadString(in, at, name_scratch_, name, error)) return fail(error);
    } else {
      switch (Find(name_index, name, unused, name_known, unused_known)) {
        case Lookup::kFound:
          break;
        case Lookup::kUnknown:
          name = {};
          name_known = false;
          break;
        case Lookup::kInvalid:
          return fail(HpackError::kBadIndex);
      }
    }
    if (!ReadString(in, at, value_scratch_, value, error)) return fail(error);
    if (!name_known) name = {};
    sink.OnField(name, value, name_known);
    if (indexing) Insert(name, value, name_known, true);
  }
  return HpackError::kNone;
}

}  // namespace threadline::http2
