// HPACK decoding against RFC 7541 Appendix C (every example, in sequence so the dynamic tables
// evolve as the RFC shows), Huffman edge cases, hostile blocks, and decoding with an unknown past.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/protocols/http2/hpack.h"

namespace threadline::http2 {
namespace {

std::vector<uint8_t> Hex(std::string_view hex) {
  std::vector<uint8_t> out;
  std::string digits;
  for (char c : hex)
    if (c != ' ' && c != '\n') digits.push_back(c);
  for (size_t i = 0; i + 1 < digits.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  return out;
}

struct Fields : HpackDecoder::FieldSink {
  void OnField(std::string_view name, std::string_view value, bool known) override {
    lines.push_back(known ? std::string(name) + ": " + std::string(value)
                          : "?" + std::string(name) + ": " + std::string(value));
  }
  std::vector<std::string> lines;
};

std::vector<std::string> Decode(HpackDecoder& d, std::string_view hex,
                                HpackError want = HpackError::kNone) {
  Fields f;
  const auto bytes = Hex(hex);
  EXPECT_EQ(d.Decode(bytes, f), want);
  return f.lines;
}

using Lines = std::vector<std::string>;

TEST(Hpack, C2LiteralRepresentations) {
  HpackDecoder d;
  EXPECT_EQ(Decode(d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
            Lines{"custom-key: custom-header"});
  EXPECT_EQ(d.table_bytes(), 55u);
  HpackDecoder d2;
  EXPECT_EQ(Decode(d2, "040c 2f73 616d 706c 652f 7061 7468"), Lines{":path: /sample/path"});
  EXPECT_EQ(d2.table_entries(), 0u);
  HpackDecoder d3;
  EXPECT_EQ(Decode(d3, "1008 7061 7373 776f 7264 0673 6563 7265 74"), Lines{"password: secret"});
  EXPECT_EQ(d3.table_entries(), 0u);
  HpackDecoder d4;
  EXPECT_EQ(Decode(d4, "82"), Lines{":method: GET"});
}

void RequestSequence(const std::vector<std::string_view>& blocks) {
  HpackDecoder d;
  EXPECT_EQ(Decode(d, blocks[0]), (Lines{":method: GET", ":scheme: http", ":path: /",
                                         ":authority: www.example.com"}));
  EXPECT_EQ(d.table_bytes(), 57u);
  EXPECT_EQ(Decode(d, blocks[1]), (Lines{":method: GET", ":scheme: http", ":path: /",
                                         ":authority: www.example.com", "cache-control: no-cache"}));
  EXPECT_EQ(d.table_bytes(), 110u);
  EXPECT_EQ(Decode(d, blocks[2]),
            (Lines{":method: GET", ":scheme: https", ":path: /index.html",
                   ":authority: www.example.com", "custom-key: custom-value"}));
  EXPECT_EQ(d.table_bytes(), 164u);
  EXPECT_EQ(d.table_entries(), 3u);
}

TEST(Hpack, C3RequestsWithoutHuffman) {
  RequestSequence({"8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                   "8286 84be 5808 6e6f 2d63 6163 6865",
                   "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"});
}

TEST(Hpack, C4RequestsWithHuffman) {
  RequestSequence({"8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                   "8286 84be 5886 a8eb 1064 9cbf",
                   "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"});
}

void ResponseSequence(const std::vector<std::string_view>& blocks) {
  HpackDecoder d;
  d.SetTableLimit(256);
  const std::string date21 = "date: Mon, 21 Oct 2013 20:13:21 GMT";
  EXPECT_EQ(Decode(d, blocks[0]), (Lines{":status: 302", "cache-control: private", date21,
                                         "location: https://www.example.com"}));
  EXPECT_EQ(d.table_bytes(), 222u);
  EXPECT_EQ(Decode(d, blocks[1]), (Lines{":status: 307", "cache-control: private", date21,
                                         "location: https://www.example.com"}));
  EXPECT_EQ(d.table_bytes(), 222u);  // ":status: 302" evicted
  EXPECT_EQ(Decode(d, blocks[2]),
            (Lines{":status: 200", "cache-control: private", "date: Mon, 21 Oct 2013 20:13:22 GMT",
                   "location: https://www.example.com", "content-encoding: gzip",
                   "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"}));
  EXPECT_EQ(d.table_bytes(), 215u);
  EXPECT_EQ(d.table_entries(), 3u);
}

TEST(Hpack, C5ResponsesWithoutHuffman) {
  ResponseSequence(
      {"4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 "
       "303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
       "4803 3330 37c1 c0bf",
       "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 "
       "5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 "
       "5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31"});
}

TEST(Hpack, C6ResponsesWithHuffman) {
  ResponseSequence(
      {"4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b "
       "ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
       "4883 640e ffc1 c0bf",
       "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad "
       "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 "
       "65c0 03ed 4ee5 b106 3d50 07"});
}

TEST(Hpack, HuffmanPaddingAndEos) {
  std::string out;
  // "a" is 00011 (5 bits): padded with three 1 bits it is valid, with 0 bits it is not.
  EXPECT_TRUE(HuffmanDecode(std::vector<uint8_t>{0x1f}, out));
  EXPECT_EQ(out, "a");
  out.clear();
  EXPECT_FALSE(HuffmanDecode(std::vector<uint8_t>{0x18}, out));
  // Eight or more padding bits are invalid (a whole byte of ones after a symbol).
  out.clear();
  EXPECT_FALSE(HuffmanDecode(std::vector<uint8_t>{0x1f, 0xff}, out));
  // EOS (30 ones) inside a string is invalid.
  out.clear();
  EXPECT_FALSE(HuffmanDecode(std::vector<uint8_t>{0xff, 0xff, 0xff, 0xff}, out));
}

TEST(Hpack, HostileBlocksAreErrorsNeverCrashes) {
  HpackDecoder d;
  Decode(d, "be", HpackError::kBadIndex);                    // dynamic index, empty table
  Decode(d, "80", HpackError::kBadIndex);                    // index 0
  Decode(d, "ff ff ff ff ff ff 0f", HpackError::kBadInteger);  // over 2^32
  Decode(d, "400a 6375", HpackError::kTruncated);            // string cut short
  Decode(d, "ff", HpackError::kTruncated);                   // integer cut short
  // After an error the table is not trusted: dynamic references come out unknown.
  EXPECT_TRUE(d.unknown_past());
  EXPECT_EQ(Decode(d, "be"), Lines{"?: "});
}

TEST(Hpack, UnknownPastKeepsWhatWasSeenSince) {
  HpackDecoder d;
  d.StartWithUnknownPast();
  // A field inserted now is index 62; index 63 is from before: unknown, not an error.
  EXPECT_EQ(Decode(d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572 be bf 82"),
            (Lines{"custom-key: custom-header", "custom-key: custom-header", "?: ", ":method: GET"}));
  // A literal whose name is an unknown entry keeps its value.
  EXPECT_EQ(Decode(d, "7f00 0361 6263"), (Lines{"?: abc"}));  // name: index 63
}

TEST(Hpack, TableStaysWithinItsCapWhateverThePeerAnnounces) {
  HpackDecoder d(1024);
  Decode(d, "3fe1 1f");  // size update to 4096: over our cap, followed up to 1024
  EXPECT_EQ(d.table_limit(), 1024u);
  std::string block;
  for (int i = 0; i < 100; ++i) block += "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572 ";
  Decode(d, block);
  EXPECT_LE(d.table_bytes(), 1024u);
}

}  // namespace
}  // namespace threadline::http2
