// `threadline view FILE...`: the web view (or, with --folded, the aggregated critical-path
// stacks) of traces read from OTLP JSON files, e.g. `--output json` files of several agents or
// the OpenTelemetry Collector's file exporter output. Needs no privileges and never touches
// BPF: main() routes here before anything else of the agent is set up.
#pragma once

#include <atomic>

namespace threadline {

// argv[0] is "view". Returns the process exit status. Serves until `stop` becomes true.
int RunViewCommand(int argc, char** argv, const std::atomic<bool>& stop);

}  // namespace threadline
