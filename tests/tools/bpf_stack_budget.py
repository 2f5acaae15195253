#!/usr/bin/env python3
"""The BPF objects' stack budget, checked from the compiled code before a kernel sees it.

The verifier refuses a program whose call chain (the program's frame plus those of the
subprograms it calls: global functions, bpf_loop callbacks) needs more than 512 bytes of stack.
What a frame needs depends on the compiler, and how the verifier counts it on the kernel (each
frame rounded up to 16 bytes with the JIT, to 32 without; newer kernels count callbacks too), so
an object that loads on one machine can be refused on the next: that happened with the capture
object (352 + 160 + 16 = 528) on a 6.18.44 kernel after it had loaded on an earlier 6.18.

This test bounds every chain from above: the largest program frame plus every subprogram of the
object, each rounded up to 32, must fit in 512. It names the frames when it does not, which the
verifier's "combined stack size of N calls is M" does not.

usage: bpf_stack_budget.py OBJDUMP OBJECT.bpf.o...
"""
import re
import subprocess
import sys

LIMIT = 512


def frames(objdump, path):
    """{section: {function: bytes below r10 it touches}} from the disassembly."""
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", path], capture_output=True, text=True,
                         check=True).stdout
    result, section, func = {}, None, None
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"^Disassembly of section (.+):$", line)
        if m:
            section, func = m.group(1), None
            continue
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            if not m.group(1).startswith("LBB"):  # labels inside a function
                func = m.group(1)
                result.setdefault(section, {})[func] = 0
            continue
        if func is None:
            continue
        for off in re.findall(r"r10 - (0x[0-9a-f]+|\d+)", line):
            result[section][func] = max(result[section][func], int(off, 0))
    return result


def round32(n):
    return max(32, (n + 31) // 32 * 32)


def main():
    objdump, objects = sys.argv[1], sys.argv[2:]
    ok = True
    for path in objects:
        by_section = frames(objdump, path)
        subprogs = by_section.get(".text", {})
        programs = {f: b for s, fs in by_section.items() if s != ".text" for f, b in fs.items()}
        if not programs:
            print(f"{path}: no programs found in the disassembly")
            ok = False
            continue
        worst = max(programs, key=programs.get)
        bound = round32(programs[worst]) + sum(round32(b) for b in subprogs.values())
        parts = " + ".join([f"{worst} {programs[worst]}"] + [f"{f} {b}" for f, b in sorted(subprogs.items())])
        verdict = "ok" if bound <= LIMIT else "OVER"
        print(f"{path.rsplit('/', 1)[-1]}: {parts} -> at most {bound} of {LIMIT} bytes (frames rounded to 32): {verdict}")
        ok = ok and bound <= LIMIT
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
