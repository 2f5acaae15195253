#include "symbolizer/probe_site.h"

#include "symbolizer/x86_insn.h"

namespace threadline::symbolizer {

namespace {

bool IsRegisterPush(const cs_insn& insn) {
  if (insn.id != X86_INS_PUSH || !insn.detail || insn.detail->x86.op_count != 1) return false;
  const cs_x86_op& op = insn.detail->x86.operands[0];
  return op.type == X86_OP_REG && op.size == 8;  // push r64 (50+r, REX.B 41 50+r)
}

bool IsDirectBranch(const cs_insn& insn) {
  if (!insn.detail || insn.detail->x86.op_count != 1) return false;
  return insn.detail->x86.operands[0].type == X86_OP_IMM;  // rel8/rel32 targets
}

}  // namespace

bool UprobeEmulatesFirstInstruction(std::span<const uint8_t> code) {
  X86Decoder d(code, 0, /*detail=*/true);
  const cs_insn* insn = d.Next();
  if (!insn) return false;
  switch (insn->id) {
    case X86_INS_PUSH:
      return IsRegisterPush(*insn);
    case X86_INS_NOP:
      // `nop` and the multi-byte `nopl/nopw` (0f 1f); endbr64 decodes as ENDBR64, not NOP, and
      // is single-stepped (measured).
      return true;
    case X86_INS_CALL:
    case X86_INS_JMP:
      return IsDirectBranch(*insn);  // indirect forms (ff /2, ff /4) are single-stepped
    default:
      break;
  }
  // Conditional jumps with a relative target are emulated too.
  if (insn->detail) {
    for (uint8_t i = 0; i < insn->detail->groups_count; ++i) {
      if (insn->detail->groups[i] == CS_GRP_JUMP && insn->id != X86_INS_JMP &&
          insn->id != X86_INS_JRCXZ && insn->id != X86_INS_JECXZ && insn->id != X86_INS_LOOP)
        return IsDirectBranch(*insn);
    }
  }
  return false;
}

std::vector<uint64_t> LeadingCallTargets(std::span<const uint8_t> code, uint64_t address,
                                         size_t max_instructions) {
  std::vector<uint64_t> targets;
  X86Decoder d(code, address, /*detail=*/true);
  for (size_t n = 0; n < max_instructions; ++n) {
    const cs_insn* insn = d.Next();
    if (!insn) break;
    if (insn->id == X86_INS_RET || insn->id == X86_INS_JMP || insn->id == X86_INS_UD2 ||
        insn->id == X86_INS_INT3)
      break;
    if (insn->id == X86_INS_CALL && IsDirectBranch(*insn))
      targets.push_back(static_cast<uint64_t>(insn->detail->x86.operands[0].imm));
  }
  return targets;
}

}  // namespace threadline::symbolizer
