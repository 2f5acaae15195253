#include "symbolizer/x86_insn.h"

#include <string>

namespace threadline::symbolizer {

X86Decoder::X86Decoder(std::span<const uint8_t> code, uint64_t address, bool detail)
    : p_(code.data()), left_(code.size()), pc_(address) {
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle_) != CS_ERR_OK) {
    handle_ = 0;
    return;
  }
  if (detail) cs_option(handle_, CS_OPT_DETAIL, CS_OPT_ON);
  insn_ = cs_malloc(handle_);
}

X86Decoder::~X86Decoder() {
  if (insn_) cs_free(insn_, 1);
  if (handle_) cs_close(&handle_);
}

const cs_insn* X86Decoder::Next() {
  if (!insn_ || left_ == 0 || !cs_disasm_iter(handle_, &p_, &left_, &pc_, insn_)) return nullptr;
  return insn_;
}

Result<std::vector<uint64_t>> ReturnOffsets(std::span<const uint8_t> code, uint64_t address) {
  // Instruction groups (CS_GRP_RET) need detail mode; the instruction id alone is enough.
  X86Decoder d(code, address, /*detail=*/false);
  if (!d.ok()) return Error{"capstone: cannot open an x86-64 decoder"};
  std::vector<uint64_t> offsets;
  while (!d.at_end()) {
    const cs_insn* insn = d.Next();
    if (!insn) {
      return Error{"undecodable instruction at offset " + std::to_string(d.pc() - address) +
                   " of " + std::to_string(code.size())};
    }
    if (insn->id == X86_INS_RET) offsets.push_back(insn->address - address);
  }
  return offsets;
}

std::optional<uint64_t> GoStackCheckJumpOffset(std::span<const uint8_t> code) {
  X86Decoder d(code, 0, /*detail=*/true);  // operands: which register an lea writes
  bool compared = false;
  for (int i = 0; i < 3; ++i) {
    const cs_insn* insn = d.Next();
    if (!insn) break;
    const cs_x86& x = insn->detail->x86;
    if (insn->id == X86_INS_LEA && !compared && x.op_count == 2 && x.operands[0].type == X86_OP_REG &&
        (x.operands[0].reg == X86_REG_R12 || x.operands[0].reg == X86_REG_R13))
      continue;  // scratch registers in Go's ABI
    if (insn->id == X86_INS_CMP && !compared && x.op_count == 2 && x.operands[1].type == X86_OP_MEM &&
        x.operands[1].mem.base == X86_REG_R14 && x.operands[1].mem.disp == 16) {
      compared = true;
      continue;
    }
    if (insn->id == X86_INS_JBE && compared) return insn->address;
    break;
  }
  return std::nullopt;
}

}  // namespace threadline::symbolizer
