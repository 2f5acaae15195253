#include "exporter/gzip.h"

#include <zlib.h>

namespace threadline {

namespace {

// windowBits 15 + 16: zlib writes/reads a gzip header and trailer instead of a zlib one.
constexpr int kGzipWindowBits = 15 + 16;

// RAII over a z_stream set up for one direction.
class ZStream {
 public:
  explicit ZStream(bool deflating) : deflating_(deflating) {}
  ~ZStream() {
    if (!ready_) return;
    if (deflating_) {
      deflateEnd(&z_);
    } else {
      inflateEnd(&z_);
    }
  }
  ZStream(const ZStream&) = delete;
  ZStream& operator=(const ZStream&) = delete;

  bool Init() {
    const int rc = deflating_ ? deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kGzipWindowBits, 8,
                                             Z_DEFAULT_STRATEGY)
                              : inflateInit2(&z_, kGzipWindowBits);
    ready_ = rc == Z_OK;
    return ready_;
  }
  z_stream* get() { return &z_; }

 private:
  z_stream z_{};
  bool deflating_;
  bool ready_ = false;
};

}  // namespace

struct GzipCompressor::State {
  ZStream z{true};
  bool ready = false;
};

GzipCompressor::GzipCompressor() : state_(std::make_unique<State>()) {}
GzipCompressor::~GzipCompressor() = default;

Result<std::string_view> GzipCompressor::Compress(std::string_view data) {
  z_stream* z = state_->z.get();
  if (!state_->ready) {
    if (!state_->z.Init()) return Error{"gzip: deflateInit2 failed"};
    state_->ready = true;
  } else if (deflateReset(z) != Z_OK) {
    return Error{"gzip: deflateReset failed"};
  }
  // The buffer only grows, so a steady stream of requests stops allocating.
  const size_t bound = deflateBound(z, static_cast<uLong>(data.size())) + 32;
  if (out_.size() < bound) out_.resize(bound);
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z->avail_in = static_cast<uInt>(data.size());
  z->next_out = reinterpret_cast<Bytef*>(out_.data());
  z->avail_out = static_cast<uInt>(out_.size());
  // deflateBound guarantees a single Z_FINISH call is enough.
  if (deflate(z, Z_FINISH) != Z_STREAM_END) return Error{"gzip: deflate did not finish"};
  return std::string_view(out_.data(), z->total_out);
}

Result<std::string> GzipCompress(std::string_view data) {
  GzipCompressor compressor;
  ASSIGN_OR_RETURN(std::string_view compressed, compressor.Compress(data));
  return std::string(compressed);
}

Result<std::string> GzipDecompress(std::string_view data) {
  ZStream z(false);
  if (!z.Init()) return Error{"gzip: inflateInit2 failed"};
  std::string out;
  z.get()->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.get()->avail_in = static_cast<uInt>(data.size());
  char buf[16384];
  for (;;) {
    z.get()->next_out = reinterpret_cast<Bytef*>(buf);
    z.get()->avail_out = sizeof(buf);
    const int rc = inflate(z.get(), Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.get()->avail_out);
    if (rc == Z_STREAM_END) return out;
    if (rc != Z_OK) return Error{"gzip: corrupt or truncated data"};
    if (z.get()->avail_in == 0 && z.get()->avail_out != 0) return Error{"gzip: truncated data"};
  }
}

}  // namespace threadline
