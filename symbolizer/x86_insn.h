// x86-64 instruction decoding for probe-site choice, on capstone (a real decoder: scanning raw
// bytes for 0xC3 would also hit that byte inside immediates, displacements and longer opcodes,
// and a uprobe placed mid-instruction corrupts the program).
#pragma once

#include <capstone/capstone.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "agent/common/result.h"

namespace threadline::symbolizer {

// One capstone x86-64 decoder walking a span of code; the one wrapper every decoding site here
// uses (probe_site.cpp too).
class X86Decoder {
 public:
  // `detail`: operands and groups (call targets, registers); off decodes only instruction ids,
  // which is cheaper.
  X86Decoder(std::span<const uint8_t> code, uint64_t address, bool detail);
  ~X86Decoder();
  X86Decoder(const X86Decoder&) = delete;
  X86Decoder& operator=(const X86Decoder&) = delete;

  bool ok() const { return insn_ != nullptr; }
  bool at_end() const { return left_ == 0; }
  // The next instruction (valid until the following call); nullptr at the end, when the bytes
  // do not decode, or when the decoder could not be opened.
  const cs_insn* Next();
  // Where the next instruction would start.
  uint64_t pc() const { return pc_; }

 private:
  csh handle_ = 0;
  cs_insn* insn_ = nullptr;
  const uint8_t* p_;
  size_t left_;
  uint64_t pc_;
};

// Offsets (from the start of `code`) of every return instruction (RET, RET imm16) in the
// function whose bytes are `code`, loaded at virtual address `address`. An error when the bytes
// do not decode to the end: a missed return would leave a call without its exit, so a partial
// answer is refused rather than returned.
Result<std::vector<uint64_t>> ReturnOffsets(std::span<const uint8_t> code, uint64_t address);

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
