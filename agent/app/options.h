// Command-line options of the agent. Precedence (documented in README): flags > environment
// (THREADLINE_* and the standard OTEL_* ones, as later issues add them) > defaults.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/common/result.h"

namespace threadline {

enum class OutputMode { kEvents, kNone };

struct AgentOptions {
  bool probe_only = false;
  OutputMode output = OutputMode::kEvents;
  std::string output_file;  // empty: stdout
  double duration_s = 0;    // 0: run until SIGINT/SIGTERM
  std::vector<uint32_t> pids;
  std::vector<std::string> exe_globs;
  std::vector<uint16_t> ports;
  uint32_t capture_bytes = 4096;
  uint32_t ring_buffer_mb = 16;
  uint32_t max_connections = 65536;
  uint32_t print_payload_bytes = 256;
  double stats_interval_s = 0;  // 0: stats only at exit
  std::string log_level = "info";
};

// Parses argv. On --help or a usage error returns an Error whose code is the exit status to use
// (0 for --help) and whose message is what to print.
Result<AgentOptions> ParseOptions(int argc, char** argv);

}  // namespace threadline
