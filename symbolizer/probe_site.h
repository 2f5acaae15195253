// Where a uprobe is cheap: the kernel's x86 uprobe code either emulates the probed instruction
// (push of a register, direct call/jmp/jcc, nop) or single-steps a copy of it out of line
// (everything else: sub, mov, endbr64, ret...). A single-step is a second trap, and on this
// project's reference VM each trap is a hypervisor round trip: measured with
// `build/bench/probes_bench --uprobes-only` (README "Probe cost per hit"), a hit on an
// emulated push costs ~4x less than one on a single-stepped `sub $0x18,%rsp`, and a 5-byte nop
// (which 6.18 turns into a call to a trampoline: no trap at all) ~15x less.
//
// A uretprobe must sit at a function's first instruction (it swaps the return address at
// [rsp]), so its cost is decided by that instruction. Debian's libssl.so.3 starts SSL_read and
// SSL_write with `sub $0x18,%rsp` (single-stepped) and immediately calls an internal function
// (ssl_read_internal / ssl_write_internal) that starts with `push %r13` / `push %r14`: probing
// the internal function instead keeps the same arguments and return convention as
// SSL_read_ex/SSL_write_ex at a fraction of the cost (agent/kernel/tls_attacher.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "agent/common/result.h"

namespace threadline::symbolizer {

// True when the first instruction of `code` is one the kernel emulates for a uprobe on x86-64
// (no single-step). Conservative: unknown or undecodable means false.
bool UprobeEmulatesFirstInstruction(std::span<const uint8_t> code);

// The targets of the direct near calls (`call rel32`) on the straight-line path at the start of
// `code` (loaded at virtual address `address`): decoding stops at the first return,
// unconditional jump, or after `max_instructions`. Conditional branches are stepped over (the
// call after one may be skipped on that path; callers confirm a target another way).
std::vector<uint64_t> LeadingCallTargets(std::span<const uint8_t> code, uint64_t address,
                                         size_t max_instructions = 24);

}  // namespace threadline::symbolizer
