// HPACK (RFC 7541), decoding only: one Decoder per direction of an HTTP/2 connection, since
// each endpoint's encoder keeps its own dynamic table.
//
// A passive observer cannot always know the whole table: a connection joined mid-way (opened
// before the agent) or a header block that was lost (gap, over the size cap) leaves entries we
// never saw. The decoder then keeps going "with an unknown past": entries inserted since are
// known and exact (the newest entries are the last the peer evicts), references to anything
// older come out as unknown fields, never as wrong ones.
//
// Bounded: the dynamic table holds at most max_table_bytes (RFC size accounting) whatever the
// peer announces; a peer table larger than that is followed as far as it fits, and references
// past it come out unknown (counted by the caller through unknown fields).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>

namespace threadline::http2 {

// Why a header block could not be decoded (a fixed set, used as metric label).
enum class HpackError : uint8_t {
  kNone,
  kTruncated,     // the block ended inside a representation
  kBadInteger,    // an integer over 2^32
  kBadIndex,      // index 0, or past the static and (known) dynamic table
  kBadHuffman,    // invalid code, EOS inside a string, or padding that is not EOS's prefix
  kStringTooLong, // a string longer than the block cap
};
std::string_view ToString(HpackError e);

// Huffman-decodes `in` (RFC 7541 §5.2) onto the end of `out`; false on an invalid encoding.
bool HuffmanDecode(std::span<const uint8_t> in, std::string& out);

class HpackDecoder {
 public:
  // The RFC's default (SETTINGS_HEADER_TABLE_SIZE 4096) is what peers nearly always use; the cap
  // bounds memory against a peer that announces more.
  static constexpr size_t kDefaultTableBytes = 4096;
  static constexpr size_t kMaxTableBytes = 64 * 1024;

  // Receives the fields of a block in order. `known` is false when the field referenced a table
  // entry the decoder never saw (then the name, or name and value, are empty).
  class FieldSink {
   public:
    virtual ~FieldSink() = default;
    virtual void OnField(std::string_view name, std::string_view value, bool known) = 0;
  };

  explicit HpackDecoder(size_t max_table_bytes = kMaxTableBytes);

  // Decodes one complete header block. On an error the fields before it were delivered and the
  // table's state is no longer trustworthy: the decoder forgets it (unknown past).
  HpackError Decode(std::span<const uint8_t> block, FieldSink& sink);

  // The maximum table size the receiving endpoint announced (SETTINGS_HEADER_TABLE_SIZE): the
  // encoder's tables stay within it.
  void SetTableLimit(uint64_t bytes) { SetLimit(bytes); }

  // A block that will never be decoded (lost in a gap, or too large to keep): its insertions
  // are unknown, so everything before it becomes unknown past.
  void LoseBlock();
  // Start of observation mid-connection: nothing of the table is known.
  void StartWithUnknownPast() { LoseBlock(); }

  bool unknown_past() const { return unknown_past_; }
  size_t table_bytes() const { return table_bytes_; }
  size_t table_entries() const { return entries_.size(); }
  size_t table_limit() const { return limit_; }

 private:
  struct Entry {
    std::string name;
    std::string value;
    bool name_known = true;
    bool value_known = true;
  };

  // The field at HPACK index `index` (1-based, static then dynamic).
  enum class Lookup : uint8_t { kFound, kUnknown, kInvalid };
  Lookup Find(uint64_t index, std::string_view& name, std::string_view& value, bool& name_known,
              bool& value_known) const;
  void Insert(std::string_view name, std::string_view value, bool name_known, bool value_known);
  void SetLimit(uint64_t bytes);
  void Evict(size_t need);

  size_t max_table_bytes_;
  size_t limit_ = kDefaultTableBytes;  // the encoder's current maximum (size updates)
  size_t table_bytes_ = 0;
  std::deque<Entry> entries_;  // front: newest (index 62)
  bool unknown_past_ = false;
  std::string name_scratch_;   // Huffman-decoded strings of the representation at hand
  std::string value_scratch_;
};

}  // namespace threadline::http2
