// The kernel families this binary holds, by (ISA, compute type, weight format), and the ISAs' probes.
#pragma once

#include <vector>

#include "cpu/family.h"

namespace fastlstm::cpu {

// Built into this binary and runnable on this CPU (its ISA and extra feature present).
bool runnable(const KernelFamily& f);
// The family for the key, or null when none is built or this CPU cannot run it.
const KernelFamily* find_family(Isa isa, DType compute, WeightFormat weights);
// Every registered family (runnable or not), in registration order.
std::vector<const KernelFamily*> all_families();
// The probes of an ISA (null when its family file is not built or the CPU cannot run it).
const IsaProbes* find_probes(Isa isa);

}  // namespace fastlstm::cpu
