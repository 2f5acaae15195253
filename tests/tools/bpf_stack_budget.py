#!/usr/bin/env python3
"""The BPF objects' stack budget, checked from the compiled code before a kernel sees it.

The verifier refuses a program whose call chain (the program's frame plus those of the
subprograms it calls: global functions, bpf_loop callbacks) needs more than 512 bytes of stack.
What a frame needs depends on the compiler, and how the verifier counts it on the kernel (each
frame rounded up to 16 bytes with the JIT, to 32 without; newer kernels count callbacks too), so
an object that loads on one machine can be refused on the next: that happened with the capture
object (352 + 160 + 16 = 528) on a 6.18.44 kernel after it had loaded on an earlier 6.18.

This test bounds every chain from above: for each program, its frame plus the deepest chain of
subprograms it can reach (calls of global functions, and functions whose address it loads: the
bpf_loop callbacks), each frame rounded up to 32, must fit in 512. It names the frames of the
worst chain when it does not, which the verifier's "combined stack size of N calls is M" does
not.

usage: bpf_stack_budget.py OBJDUMP OBJECT.bpf.o...
"""
import re
import subprocess
import sys

LIMIT = 512


def functions(objdump, path):
    """{function: (section, bytes below r10 it touches, callees)} from the disassembly.

    Callees: global functions it calls (R_BPF_64_32 relocations) and .text functions whose
    address it loads (ld_imm64 relocated against .text: bpf_loop and friends' callbacks)."""
    out = subprocess.run([objdump, "-d", "-r", "--no-show-raw-insn", path], capture_output=True,
                         text=True, check=True).stdout
    result, starts, section, func, last_imm = {}, {}, None, None, None
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"^Disassembly of section (.+):$", line)
        if m:
            section, func = m.group(1), None
            continue
        m = re.match(r"^([0-9a-f]+) <(.+)>:$", line)
        if m:
            if not m.group(2).startswith("LBB"):  # labels inside a function
                func = m.group(2)
                result[func] = [section, 0, set()]
                if section == ".text":
                    starts[int(m.group(1), 16)] = func
            continue
        if func is None:
            continue
        for off in re.findall(r"r10 - (0x[0-9a-f]+|\d+)", line):
            result[func][1] = max(result[func][1], int(off, 0))
        m = re.match(r"^[0-9a-f]+:\s+r\d+ = (-?\d+) ll$", line)
        last_imm = int(m.group(1)) if m else (last_imm if "R_BPF" in line else None)
        m = re.search(r"R_BPF_64_32\s+(\S+)", line)
        if m and m.group(1) != ".text":
            result[func][2].add(m.group(1))
        if re.search(r"R_BPF_64_64\s+\.text", line) and last_imm is not None:
            result[func][2].add(("text", last_imm))
    for name, entry in result.items():  # .text offsets to names
        entry[2] = {starts.get(c[1], f".text+{c[1]}") if isinstance(c, tuple) else c for c in entry[2]}
    return result


def round32(n):
    return max(32, (n + 31) // 32 * 32)


def deepest(funcs, name, seen=()):
    """(bound, [frames]) of the deepest chain starting at `name`."""
    section, frame, callees = funcs.get(name, (None, 0, set()))
    best = (0, [])
    for c in sorted(callees):
        if c in seen:
            continue  # recursion is refused by the verifier anyway
        best = max(best, deepest(funcs, c, seen + (name,)))
    return round32(frame) + best[0], [f"{name} {frame}"] + best[1]


def main():
    objdump, objects = sys.argv[1], sys.argv[2:]
    ok = True
    for path in objects:
        funcs = functions(objdump, path)
        programs = [f for f, (section, _, _) in funcs.items() if section != ".text"]
        if not programs:
            print(f"{path}: no programs found in the disassembly")
            ok = False
            continue
        bound, chain = max(deepest(funcs, p) for p in programs)
        verdict = "ok" if bound <= LIMIT else "OVER"
        print(f"{path.rsplit('/', 1)[-1]}: {' + '.join(chain)} -> at most {bound} of {LIMIT} bytes "
              f"(frames rounded to 32): {verdict}")
        ok = ok and bound <= LIMIT
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
