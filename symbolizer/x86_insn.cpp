#include "symbolizer/x86_insn.h"

#include <capstone/capstone.h>

#include <memory>
#include <string>

namespace threadline::symbolizer {

namespace {

struct HandleCloser {
  void operator()(csh* h) const {
    cs_close(h);
    delete h;
  }
};

struct InsnFree {
  void operator()(cs_insn* i) const { cs_free(i, 1); }
};

}  // namespace

Result<std::vector<uint64_t>> ReturnOffsets(std::span<const uint8_t> code, uint64_t address) {
  auto handle = std::unique_ptr<csh, HandleCloser>(new csh{});
  if (cs_open(CS_ARCH_X86, CS_MODE_64, handle.get()) != CS_ERR_OK)
    return Error{"capstone: cannot open an x86-64 decoder"};
  // Instruction groups (CS_GRP_RET) need detail mode; the instruction id alone is enough and
  // keeps decoding cheap.
  std::unique_ptr<cs_insn, InsnFree> insn(cs_malloc(*handle));
  if (!insn) return Error{"capstone: out of memory"};

  std::vector<uint64_t> offsets;
  const uint8_t* p = code.data();
  size_t left = code.size();
  uint64_t pc = address;
  while (left > 0) {
    if (!cs_disasm_iter(*handle, &p, &left, &pc, insn.get())) {
      return Error{"undecodable instruction at offset " + std::to_string(pc - address) + " of " +
                   std::to_string(code.size())};
    }
    if (insn->id == X86_INS_RET) offsets.push_back(insn->address - address);
  }
  return offsets;
}

}  // namespace threadline::symbolizer

namespace threadline::symbolizer {

std::optional<uint64_t> GoStackCheckJumpOffset(std::span<const uint8_t> code) {
  csh handle = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle) != CS_ERR_OK) return std::nullopt;
  cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);  // operands: which register an lea writes
  std::optional<uint64_t> found;
  cs_insn* insn = cs_malloc(handle);
  const uint8_t* p = code.data();
  size_t left = code.size();
  uint64_t pc = 0;
  bool compared = false;
  for (int i = 0; i < 3 && insn && cs_disasm_iter(handle, &p, &left, &pc, insn); ++i) {
    const cs_x86& x = insn->detail->x86;
    if (insn->id == X86_INS_LEA && !compared && x.op_count == 2 && x.operands[0].type == X86_OP_REG &&
        (x.operands[0].reg == X86_REG_R12 || x.operands[0].reg == X86_REG_R13))
      continue;  // scratch registers in Go's ABI
    if (insn->id == X86_INS_CMP && !compared && x.op_count == 2 && x.operands[1].type == X86_OP_MEM &&
        x.operands[1].mem.base == X86_REG_R14 && x.operands[1].mem.disp == 16) {
      compared = true;
      continue;
    }
    if (insn->id == X86_INS_JBE && compared) found = insn->address;
    break;
  }
  if (insn) cs_free(insn, 1);
  cs_close(&handle);
  return found;
}

}  // namespace threadline::symbolizer
