// Capability probing: which kinds of BPF hooks this kernel really supports, found by loading,
// attaching and triggering a tiny program of each kind (bpf/probe.bpf.c), one at a time, the
// way bpftrace's BPFfeature does. Never by looking a symbol or a config option up: kernels
// that have a symbol can still refuse the attach (lockdown, missing kprobe support, EPERM on
// fentry), and only an attach says so.
#pragma once

#include "agent/capabilities/capability_report.h"

namespace threadline {

// Prepares the BPF environment (PrepareBpfEnvironment), probes every kind and chooses a
// mechanism per hook. Runs once per process; later calls return the same report. Needs root
// (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN for cgroups and tracefs); without it every kind is
// reported unavailable with the errno, and can_run is false.
//
// Kinds are probed concurrently, one short-lived thread each, and every program, link, socket,
// child process and the probe cgroup is gone when this returns. About 0.2-0.4 s on a 2-CPU VM,
// nearly all of it the kernel waiting out RCU grace periods while detaching tracepoints and
// uprobes. The probe forks short-lived children (sched and sockops kinds).
const CapabilityReport& ProbeCapabilities();

// The same, without the cache: each call probes again.
CapabilityReport RunCapabilityProbe();

}  // namespace threadline
