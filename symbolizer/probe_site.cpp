#include "symbolizer/probe_site.h"

#include <capstone/capstone.h>

#include <memory>

namespace threadline::symbolizer {

namespace {

// One capstone x86-64 decoder with operand details (for call targets).
class Decoder {
 public:
  Decoder() {
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle_) != CS_ERR_OK) return;
    cs_option(handle_, CS_OPT_DETAIL, CS_OPT_ON);
    insn_ = cs_malloc(handle_);
    ok_ = insn_ != nullptr;
  }
  ~Decoder() {
    if (insn_) cs_free(insn_, 1);
    if (handle_) cs_close(&handle_);
  }
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  bool ok() const { return ok_; }
  // Decodes the next instruction at *p, advancing p/left/pc; nullptr when undecodable.
  const cs_insn* Next(const uint8_t** p, size_t* left, uint64_t* pc) {
    if (!ok_ || *left == 0 || !cs_disasm_iter(handle_, p, left, pc, insn_)) return nullptr;
    return insn_;
  }

 private:
  csh handle_ = 0;
  cs_insn* insn_ = nullptr;
  bool ok_ = false;
};

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
  Decoder d;
  const uint8_t* p = code.data();
  size_t left = code.size();
  uint64_t pc = 0;
  const cs_insn* insn = d.Next(&p, &left, &pc);
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
  Decoder d;
  const uint8_t* p = code.data();
  size_t left = code.size();
  uint64_t pc = address;
  for (size_t n = 0; n < max_instructions; ++n) {
    const cs_insn* insn = d.Next(&p, &left, &pc);
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
