// A minimal streaming JSON writer for the view's API: appends to one string, commas and
// nesting handled, strings escaped as the OTLP JSON writer does (exporter/json_lines.h).
// Writing by hand rather than through a DOM keeps a 10,000-span trace at one growing buffer.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "exporter/json_lines.h"

namespace threadline {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& BeginObject() { return Open('{'); }
  JsonWriter& EndObject() { return Close('}'); }
  JsonWriter& BeginArray() { return Open('['); }
  JsonWriter& EndArray() { return Close(']'); }

  JsonWriter& Key(std::string_view k) {
    Comma();
    AppendJsonString(k, out_);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  JsonWriter& String(std::string_view v) {
    Comma();
    AppendJsonString(v, out_);
    return *this;
  }
  JsonWriter& Uint(uint64_t v) {
    Comma();
    char buf[24];
    out_.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
    return *this;
  }
  JsonWriter& Int(int64_t v) {
    Comma();
    char buf[24];
    out_.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
    return *this;
  }
  JsonWriter& Double(double v) {
    Comma();
    if (!std::isfinite(v)) {
      out_ += "null";
    } else {
      char buf[32];
      out_.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
    }
    return *this;
  }
  JsonWriter& Bool(bool v) {
    Comma();
    out_ += v ? "true" : "false";
    return *this;
  }
  JsonWriter& Null() {
    Comma();
    out_ += "null";
    return *this;
  }
  // A 64-bit number that JavaScript could not hold exactly (unix nanoseconds), as a string.
  JsonWriter& BigUint(uint64_t v) {
    Comma();
    char buf[24];
    out_ += '"';
    out_.append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
    out_ += '"';
    return *this;
  }

 private:
  void Comma() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
  }
  JsonWriter& Open(char c) {
    Comma();
    out_ += c;
    first_.push_back(true);
    return *this;
  }
  JsonWriter& Close(char c) {
    out_ += c;
    first_.pop_back();
    return *this;
  }

  std::string& out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace threadline
