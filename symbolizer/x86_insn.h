// x86-64 instruction decoding for probe-site choice, on capstone (a real decoder: scanning raw
// bytes for 0xC3 would also hit that byte inside immediates, displacements and longer opcodes,
// and a uprobe placed mid-instruction corrupts the program).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "agent/common/result.h"

namespace threadline::symbolizer {

// Offsets (from the start of `code`) of every return instruction (RET, RET imm16) in the
// function whose bytes are `code`, loaded at virtual address `address`. An error when the bytes
// do not decode to the end: a missed return would leave a call without its exit, so a partial
// answer is refused rather than returned.
Result<std::vector<uint64_t>> ReturnOffsets(std::span<const uint8_t> code, uint64_t address);

}  // namespace threadline::symbolizer

namespace threadline::symbolizer {

// Go functions with a stack frame start by checking the goroutine's stack bound:
//     cmp rsp, [r14+16]                      (small frames)
//     lea r12, [rsp-N] ; cmp r12, [r14+16]   (larger ones)
//     jbe <call morestack, then restart the function>
// Returns the offset of that `jbe` when `code` starts so, nullopt otherwise. Nothing before it
// writes an argument register or R14, so a probe there sees the entry state; the kernel
// emulates a conditional jump for a uprobe (no single-step, unlike the cmp/lea before it); and
// the flags at that point tell whether the stack is about to grow (CF or ZF set: the function
// will restart from its entry, so this pass must be ignored or the call is seen twice).
std::optional<uint64_t> GoStackCheckJumpOffset(std::span<const uint8_t> code);

}  // namespace threadline::symbolizer
