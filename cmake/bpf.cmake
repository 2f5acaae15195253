# Compiles a CO-RE BPF object with clang and wraps it in a libbpf skeleton.
#
# vmlinux.h is generated from the build machine's BTF (/sys/kernel/btf/vmlinux). CO-RE
# relocations make the object portable to other BTF kernels, so the build kernel only has
# to have BTF, not to match the target.
find_program(CLANG_BPF NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)

set(THREADLINE_BPF_GEN_DIR ${CMAKE_BINARY_DIR}/bpf-gen)
file(MAKE_DIRECTORY ${THREADLINE_BPF_GEN_DIR})
set(THREADLINE_VMLINUX_BTF /sys/kernel/btf/vmlinux CACHE FILEPATH "BTF used to generate vmlinux.h")

add_custom_command(
  OUTPUT ${THREADLINE_BPF_GEN_DIR}/vmlinux.h
  COMMAND ${BPFTOOL} btf dump file ${THREADLINE_VMLINUX_BTF} format c > ${THREADLINE_BPF_GEN_DIR}/vmlinux.h
  COMMENT "Generating vmlinux.h from ${THREADLINE_VMLINUX_BTF}"
  VERBATIM)
add_custom_target(threadline_vmlinux_h DEPENDS ${THREADLINE_BPF_GEN_DIR}/vmlinux.h)

# threadline_bpf_skeleton(<name> <source.bpf.c> [DEPENDS headers...])
# produces ${THREADLINE_BPF_GEN_DIR}/<name>.skel.h (skeleton struct <name>_bpf) and an INTERFACE
# target bpf_<name>.
function(threadline_bpf_skeleton name src)
  cmake_parse_arguments(ARG "" "" "DEPENDS" ${ARGN})
  set(obj ${THREADLINE_BPF_GEN_DIR}/${name}.bpf.o)
  set(skel ${THREADLINE_BPF_GEN_DIR}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CLANG_BPF} -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror
            -Wno-unused-function -Wno-compare-distinct-pointer-types
            -I${THREADLINE_BPF_GEN_DIR} -I${CMAKE_SOURCE_DIR}/bpf/include -I${CMAKE_SOURCE_DIR}/bpf
            -c ${CMAKE_CURRENT_SOURCE_DIR}/${src} -o ${obj}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${src} ${ARG_DEPENDS} ${THREADLINE_BPF_GEN_DIR}/vmlinux.h
    COMMENT "clang -target bpf ${src}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}
    DEPENDS ${obj}
    COMMENT "bpftool gen skeleton ${name}"
    VERBATIM)
  add_custom_target(bpf_${name}_gen DEPENDS ${skel})
  add_library(bpf_${name} INTERFACE)
  add_dependencies(bpf_${name} bpf_${name}_gen)
  target_include_directories(bpf_${name} INTERFACE ${THREADLINE_BPF_GEN_DIR} ${CMAKE_SOURCE_DIR}/bpf/include)
endfunction()
