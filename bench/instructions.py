#!/usr/bin/env python3
"""Instructions per kernel event and per span of the userspace pipeline, and allocations per span.

Runs build/bench/pipeline_bench under callgrind, counting only its timed part (the pipeline's
work: decode -> connections -> protocols -> spans -> encoding; pipeline_bench toggles collection
around it), once per workload and encoding. Instruction counts do not depend on the machine's
load, so this is how pipeline changes are judged on a busy machine; events/s on a quiet one come
from pipeline_bench itself.

    python3 bench/instructions.py [--bench build/bench/pipeline_bench] [--events 200000]
                                  [--workload keepalive close] [--encode none json proto]
                                  [--markdown]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile


def run(bench, workload, encode, events):
    with tempfile.TemporaryDirectory(prefix="tl-instructions-") as tmp:
        cmd = [
            "valgrind", "--tool=callgrind", "--collect-atstart=no",
            "--callgrind-out-file=" + os.path.join(tmp, "callgrind.out"),
            bench, "--workload", workload, "--encode", encode, "--events", str(events),
            "--connections", "1000", "--memory-connections", "0", "--collector-down-seconds", "0",
        ]
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"instructions: {' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    collected = re.search(r"Collected : (\d+)", p.stderr)
    result = next((json.loads(line[len("RESULT "):]) for line in p.stdout.splitlines()
                   if line.startswith("RESULT ") and '"pipeline"' in line), None)
    if collected is None or result is None:
        sys.exit(f"instructions: no count or no result from {' '.join(cmd)}:\n{p.stdout}\n{p.stderr}")
    instructions = int(collected.group(1))
    return {
        "workload": workload,
        "encoding": result["encoding"],
        "instructions": instructions,
        "per_event": instructions / result["events"],
        "per_span": instructions / max(1, result["spans"]),
        "allocs_per_span": result["allocs_per_span"],
        "alloc_bytes_per_span": result["alloc_bytes_per_span"],
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=os.path.join(here, "..", "build", "bench", "pipeline_bench"))
    ap.add_argument("--events", type=int, default=200000, help="kernel events per run (timed part)")
    ap.add_argument("--workload", nargs="+", default=["keepalive", "close"], choices=["keepalive", "close"])
    ap.add_argument("--encode", nargs="+", default=["none", "json", "proto"], choices=["none", "json", "proto"])
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = [run(args.bench, w, e, args.events) for w in args.workload for e in args.encode]
    if args.markdown:
        print("| workload | encoding | instructions/event | instructions/span | allocations/span | alloc bytes/span |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['workload']} | {r['encoding']} | {r['per_event']:,.0f} | {r['per_span']:,.0f} | "
                  f"{r['allocs_per_span']:.1f} | {r['alloc_bytes_per_span']:,.0f} |")
    else:
        print(f"{'workload':<10} {'encoding':<11} {'instr/event':>12} {'instr/span':>11} {'allocs/span':>12} {'B/span':>8}")
        for r in rows:
            print(f"{r['workload']:<10} {r['encoding']:<11} {r['per_event']:>12,.0f} {r['per_span']:>11,.0f} "
                  f"{r['allocs_per_span']:>12.1f} {r['alloc_bytes_per_span']:>8,.0f}")
    for r in rows:
        print("RESULT " + json.dumps({"bench": "instructions", **r}))


if __name__ == "__main__":
    main()
