// Loads the real capture program for the test process itself (trace_all off, this pid
// selected with inheritance) and records every decoded event, payloads copied.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/common/metrics.h"
#include "agent/ingest/ring_consumer.h"
#include "agent/kernel/bpf_env.h"
#include "agent/kernel/capture_program.h"
#include "kernel_env.h"

namespace threadline::testing {

struct RecordedData {
  DataEvent ev;
  std::string payload;
};

// A ProcExecEvent with its strings owned.
struct RecordedExec {
  uint32_t pid = 0;
  uint32_t ppid = 0;
  uint64_t start_boottime_ns = 0;
  std::string comm, filename, exe_name, args;
};

struct Recorder : EventSink {
  std::vector<ConnOpenEvent> opens;
  std::vector<ConnCloseEvent> closes;
  std::vector<RecordedData> data;
  std::vector<ProcExitEvent> exits;
  std::vector<ProcForkEvent> forks;
  std::vector<ConnStateEvent> states;
  std::vector<TraceCtxEvent> contexts;
  std::vector<RecordedExec> execs;

  void OnConnOpen(const ConnOpenEvent& e) override {
    opens.push_back(e);
    opens.back().comm = {};
  }
  void OnConnClose(const ConnCloseEvent& e) override { closes.push_back(e); }
  void OnData(const DataEvent& e) override {
    RecordedData r{e, std::string(e.payload.begin(), e.payload.end())};
    r.ev.payload = {};
    data.push_back(std::move(r));
  }
  void OnProcExit(const ProcExitEvent& e) override {
    exits.push_back(e);
    exits.back().comm = {};
  }
  void OnProcFork(const ProcForkEvent& e) override {
    forks.push_back(e);
    forks.back().comm = {};
  }
  void OnConnState(const ConnStateEvent& e) override { states.push_back(e); }
  void OnProcExec(const ProcExecEvent& e) override {
    execs.push_back({e.pid, e.ppid, e.start_boottime_ns, std::string(e.comm), std::string(e.filename),
                     std::string(e.exe_name), std::string(e.args)});
  }
  void OnTraceContext(const TraceCtxEvent& e) override { contexts.push_back(e); }

  // The open event of the connection on this fd of this process (the latest generation).
  const ConnOpenEvent* OpenFor(uint32_t tgid, int fd) const {
    const ConnOpenEvent* found = nullptr;
    for (const auto& o : opens)
      if (o.id.tgid == tgid && o.id.fd == fd) found = &o;
    return found;
  }
  std::vector<RecordedData> DataFor(const ConnId& id, Direction dir) const {
    std::vector<RecordedData> out;
    for (const auto& d : data)
      if (d.ev.id == id && d.ev.direction == dir) out.push_back(d);
    return out;
  }
  // Bytes of one direction reassembled by position (tests keep to in-order, uncapped sizes).
  std::string StreamFor(const ConnId& id, Direction dir) const {
    std::map<uint64_t, std::string> by_pos;
    for (const auto& d : DataFor(id, dir)) by_pos[d.ev.pos] = d.payload;
    std::string out;
    for (const auto& [pos, bytes] : by_pos) {
      EXPECT_EQ(pos, out.size()) << "hole in the captured stream";
      out += bytes;
    }
    return out;
  }
  const ConnCloseEvent* CloseFor(const ConnId& id) const {
    for (const auto& c : closes)
      if (c.id == id) return &c;
    return nullptr;
  }
};

class CaptureTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireBpfOrSkip(); }

  // Loads and attaches; call at the start of each test (after anything that must predate it).
  void Load(CaptureConfig config = {}) {
    ASSERT_TRUE(PrepareBpfEnvironment().ok());
    config.trace_all = false;
    config.agent_tgid = 0;
    auto capture = CaptureProgram::Create(config);
    ASSERT_TRUE(capture.ok()) << capture.error().message;
    capture_ = std::move(capture).value();
    ASSERT_TRUE(capture_->Select(static_cast<uint32_t>(getpid())).ok());
    auto ring = RingConsumer::Create(capture_->ring_buffer_fd(), rec_, metrics_);
    ASSERT_TRUE(ring.ok()) << ring.error().message;
    ring_ = std::move(ring).value();
  }

  // Consumes events until the ring has been quiet for a while (bounded).
  void Drain() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    int quiet = 0;
    while (std::chrono::steady_clock::now() < deadline && quiet < 3) {
      auto n = ring_->Poll(30);
      ASSERT_TRUE(n.ok());
      quiet = *n == 0 ? quiet + 1 : 0;
    }
  }

  uint32_t self() const { return static_cast<uint32_t>(getpid()); }

  MetricsRegistry metrics_;
  Recorder rec_;
  std::unique_ptr<CaptureProgram> capture_;
  std::unique_ptr<RingConsumer> ring_;
};

}  // namespace threadline::testing
