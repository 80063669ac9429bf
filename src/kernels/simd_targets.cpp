// Which of Highway's compiled SIMD targets this CPU can run: the three functions of Highway's runtime
// library that HWY_DYNAMIC_DISPATCH and our target switch call, defined here so that softreg does not
// load libhwy.so. Debian's libhwy 1.0.3 runs hwy::platform::TimerResolution() as a static initializer
// (a nanobenchmark calibration of 65,536 timer reads), which cost every softreg process about 4 ms at
// start, more than a quarter of `softreg --version` (BENCHMARKS.md). The kernels still come from
// Highway's headers; only the CPU check is ours, and it asks for every feature the compiler may emit
// for a target, so that a target is never chosen on a CPU that lacks part of it.
#include <hwy/targets.h>

#include <atomic>
#include <cstdint>

#include "softreg/kernels.hpp"

#if HWY_ARCH_X86
#include <cpuid.h>
#endif

namespace softreg {
namespace {

#if HWY_ARCH_X86
struct CpuidRegisters {
  std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegisters cpuid(std::uint32_t leaf, std::uint32_t subleaf = 0) {
  CpuidRegisters r;
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) return {};
  return r;
}

bool bit(std::uint32_t reg, int index) {
  return (reg >> index) & 1u;
}

// The register state the operating system saves on a context switch (XCR0); without it, wider
// registers would be corrupted by any interrupt.
std::uint64_t os_saved_state() {
  std::uint32_t low = 0, high = 0;
  asm volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(low), "=d"(high) : "c"(0));  // xgetbv, without -mxsave
  return (static_cast<std::uint64_t>(high) << 32) | low;
}

std::int64_t detect_x86_targets() {
  const CpuidRegisters basic = cpuid(1);
  const bool sse2 = bit(basic.edx, 26), sse3 = bit(basic.ecx, 0), pclmul = bit(basic.ecx, 1),
             ssse3 = bit(basic.ecx, 9), fma = bit(basic.ecx, 12), sse41 = bit(basic.ecx, 19),
             sse42 = bit(basic.ecx, 20), aes = bit(basic.ecx, 25), osxsave = bit(basic.ecx, 27),
             avx = bit(basic.ecx, 28), f16c = bit(basic.ecx, 29);
  const bool lzcnt = bit(cpuid(0x80000001u).ecx, 5);
  const CpuidRegisters extended = cpuid(0).eax >= 7 ? cpuid(7, 0) : CpuidRegisters{};
  const bool bmi = bit(extended.ebx, 3), avx2 = bit(extended.ebx, 5), bmi2 = bit(extended.ebx, 8),
             avx512f = bit(extended.ebx, 16), avx512dq = bit(extended.ebx, 17),
             avx512cd = bit(extended.ebx, 28), avx512bw = bit(extended.ebx, 30),
             avx512vl = bit(extended.ebx, 31);
  const bool vbmi = bit(extended.ecx, 1), vbmi2 = bit(extended.ecx, 6), gfni = bit(extended.ecx, 8),
             vaes = bit(extended.ecx, 9), vpclmulqdq = bit(extended.ecx, 10), vnni = bit(extended.ecx, 11),
             bitalg = bit(extended.ecx, 12), popcntdq = bit(extended.ecx, 14);

  // XMM and YMM state (bits 1, 2); opmask and both halves of ZMM (bits 5, 6, 7).
  const std::uint64_t saved = osxsave ? os_saved_state() : 0;
  const bool os_ymm = (saved & 0x6) == 0x6, os_zmm = os_ymm && (saved & 0xe0) == 0xe0;

  std::int64_t targets = 0;
  const bool ssse3_group = sse2 && sse3 && ssse3;
  const bool sse4_group = ssse3_group && sse41 && sse42 && pclmul && aes;
  const bool avx2_group = sse4_group && os_ymm && avx && avx2 && fma && f16c && lzcnt && bmi && bmi2;
  const bool avx3_group = avx2_group && os_zmm && avx512f && avx512vl && avx512dq && avx512bw && avx512cd;
  const bool avx3_dl_group =
      avx3_group && vnni && vpclmulqdq && vbmi && vbmi2 && vaes && popcntdq && bitalg && gfni;
  if (ssse3_group) targets |= HWY_SSSE3;
  if (sse4_group) targets |= HWY_SSE4;
  if (avx2_group) targets |= HWY_AVX2;
  if (avx3_group) targets |= HWY_AVX3;
  if (avx3_dl_group) targets |= HWY_AVX3_DL;
  return targets;
}
#endif

std::int64_t detect_targets() {
  // The portable targets always run, and so does whatever this file was compiled for.
  std::int64_t targets = HWY_SCALAR | HWY_EMU128 | HWY_ENABLED_BASELINE;
#if HWY_ARCH_X86
  targets |= detect_x86_targets();
#endif
  // Elsewhere only the baseline: correct, if slower than the CPU could be.
  return targets;
}

// Set by tests (and the --simd option) to pretend the CPU has only these targets; 0: the real CPU.
std::atomic<std::int64_t> pretended_targets{0};

}  // namespace

bool cpu_has_avx512_bf16() {
#if HWY_ARCH_X86
  static const bool has = [] {
    if ((detect_x86_targets() & HWY_AVX3) == 0) return false;  // AVX-512 F/BW/DQ/VL, saved by the OS
    if (cpuid(0).eax < 7 || cpuid(7, 0).eax < 1) return false;
    return bit(cpuid(7, 1).eax, 5);  // AVX512_BF16
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace softreg

namespace hwy {

int64_t SupportedTargets() {
  const std::int64_t pretended = softreg::pretended_targets.load();
  if (pretended != 0) return pretended;
  static const std::int64_t detected = softreg::detect_targets();  // cpuid is slow in a virtual machine
  return detected;
}

void SetSupportedTargetsForTest(int64_t targets) {
  softreg::pretended_targets.store(targets);
  GetChosenTarget().DeInit();  // the next dynamic dispatch chooses again
}

ChosenTarget& GetChosenTarget() {
  static ChosenTarget chosen;
  return chosen;
}

}  // namespace hwy
