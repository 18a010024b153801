// Row order and team split of a call (rows.h).
#include "cpu/rows.h"

#include <algorithm>
#include <numeric>

namespace fastlstm::cpu {

void RowOrder::build(int T_, int B_, const std::int64_t* lens) {
  T = T_;
  B = B_;
  steps = T;
  lengths.clear();
  perm.clear();
  active.clear();
  if (!lens) return;
  lengths.assign(lens, lens + B);
  perm.resize(B);
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int x, int y) { return lens[x] > lens[y]; });
  steps = static_cast<int>(lens[perm[0]]);
  active.assign(T, 0);
  for (int r = 0; r < B; ++r)
    for (int t = 0, n = static_cast<int>(lens[perm[r]]); t < n; ++t) active[t] = r + 1;
}

double RowOrder::work_rows() const {
  if (lengths.empty()) return static_cast<double>(T) * B;
  return std::accumulate(lengths.begin(), lengths.end(), 0.0);
}

void TeamSplit::reset(int directions, int nthreads) {
  size = nthreads;
  groups = (directions == 2 && nthreads >= 2) ? 2 : 1;
  team.reset(nthreads);
  group[0].reset(group_size(0));
  group[1].reset(groups == 2 ? group_size(1) : nthreads - nthreads / 2);
}

double forward_flops(const ModelShape& s, double rows) {
  double per_row = 0;
  for (int k = 0; k < s.num_layers; ++k)
    per_row += 8.0 * s.hidden_size * (s.layer_input(k) + s.out_size()) + 2.0 * s.hidden_size * s.proj_size;
  return per_row * s.directions() * rows;
}

double team_work(double flops, WeightFormat weights) {
  switch (weights) {
    case WeightFormat::kF64:
      return 2 * flops;
    case WeightFormat::kBF16:
      return flops / 2;
    case WeightFormat::kI8RowScaled:
      return flops / 4;
    case WeightFormat::kF32:
      break;
  }
  return flops;
}

}  // namespace fastlstm::cpu
