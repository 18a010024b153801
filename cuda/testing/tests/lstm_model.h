// The LSTM in float64 that the CUDA kernels' tests compare with (fastlstm.reference's formulas): the forward of
// every option (layers, bidirectional, h0 / c0, lengths, projection, peepholes, no bias, dropout masks between
// layers) and backpropagation through time; and the random problems the tests draw. Test-only.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "fastlstm/engine.h"
#include "fastlstm/types.h"

namespace fastlstm::emu::testing {

struct LstmCase {
  ModelShape s;
  int T, B;
  bool batch_first, states, lengths;
  bool dropout = false;  // masks between layers (training)
};

// One layer and direction as the user holds it (RawLayer's layouts), float32.
struct Raw {
  std::vector<float> w_ih, w_hh, b_ih, b_hh, w_hr, peep;  // peep: p_i, p_f, p_o
};

// A drawn problem: weights, x in the user's layout ([T,B,I] or [B,T,I], strides x_st / x_sb) and as [T][B][I]
// (xt), h0 [L*D][B][R], c0 [L*D][B][H], lengths (len[0] = T).
struct Problem {
  std::vector<Raw> raw;
  std::vector<RawLayer> layers;  // views of raw, as the packers take them
  std::vector<float> x, xt, h0, c0;
  std::int64_t x_st = 0, x_sb = 0;
  std::vector<int> len;
  std::vector<std::vector<float>> masks;  // with dropout: L - 1 masks [T][B][D*R] of 0 or 1 / (1 - 0.3)
};

inline Problem draw(const LstmCase& c, std::uint64_t seed) {
  const ModelShape& s = c.s;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), L = s.num_layers, T = c.T, B = c.B;
  std::mt19937_64 rng(seed);
  const float scale = 1.0f / std::sqrt(static_cast<float>(H));
  std::uniform_real_distribution<float> uw(-2 * scale, 2 * scale);
  std::normal_distribution<float> normal;
  Problem p;
  p.raw.resize(static_cast<std::size_t>(L) * D);
  for (int k = 0; k < L; ++k) {
    for (int d = 0; d < D; ++d) {
      Raw& w = p.raw[k * D + d];
      w.w_ih.resize(static_cast<std::size_t>(4) * H * s.layer_input(k));
      w.w_hh.resize(static_cast<std::size_t>(4) * H * R);
      w.b_ih.resize(4 * H);
      w.b_hh.resize(4 * H);
      w.w_hr.resize(static_cast<std::size_t>(s.proj_size) * H);
      w.peep.resize(3 * H);
      for (auto* v : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh, &w.w_hr, &w.peep}) {
        for (float& e : *v) e = uw(rng);
      }
    }
  }
  for (const Raw& w : p.raw) {
    p.layers.push_back({w.w_ih.data(), w.w_hh.data(), w.b_ih.data(), w.b_hh.data(), w.w_hr.data(), w.peep.data(),
                        w.peep.data() + H, w.peep.data() + 2 * H});
  }
  const int I = s.input_size;
  p.x.resize(static_cast<std::size_t>(T) * B * I);
  p.xt.resize(p.x.size());
  for (float& v : p.x) v = normal(rng);
  p.x_st = c.batch_first ? I : static_cast<std::int64_t>(B) * I;
  p.x_sb = c.batch_first ? static_cast<std::int64_t>(T) * I : I;
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      for (int i = 0; i < I; ++i)
        p.xt[(static_cast<std::size_t>(t) * B + b) * I + i] = p.x[t * p.x_st + b * p.x_sb + i];
    }
  }
  p.h0.resize(static_cast<std::size_t>(L) * D * B * R);
  p.c0.resize(static_cast<std::size_t>(L) * D * B * H);
  for (float& v : p.h0) v = 0.5f * normal(rng);
  for (float& v : p.c0) v = normal(rng);
  p.len.assign(B, T);
  if (c.lengths) {
    for (int b = 0; b < B; ++b) p.len[b] = 1 + static_cast<int>(rng() % static_cast<std::uint64_t>(T));
    p.len[0] = T;
  }
  if (c.dropout) {
    std::bernoulli_distribution keep(0.7);
    for (int k = 0; k + 1 < L; ++k) {
      p.masks.emplace_back(static_cast<std::size_t>(T) * B * D * R);
      for (float& m : p.masks.back()) m = keep(rng) ? 1.0f / 0.7f : 0.0f;
    }
  }
  return p;
}

inline double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// What backward needs of each step a row runs, per (layer k, direction d, row b, step st) at
// ((k * D + d) * B + b) * T + st: the layer input x_t, h_{t-1}, c_{t-1}, c_t and the gates i, f, g, o [4H].
struct Trace {
  std::vector<std::vector<double>> x, h_prev, c_prev, c, gates;
  std::vector<std::vector<double>> inputs;  // per layer: its input [T][B][In]
};

// The float64 LSTM: y [T][B][D*R], h_n [L*D][B][R], c_n [L*D][B][H]; with `trace`, what backward needs.
inline void reference(const LstmCase& c, const Problem& pr, std::vector<double>& y, std::vector<double>& hn,
                      std::vector<double>& cn, Trace* trace = nullptr) {
  const ModelShape& s = c.s;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), T = c.T, B = c.B;
  hn.assign(static_cast<std::size_t>(s.num_layers) * D * B * R, 0.0);
  cn.assign(static_cast<std::size_t>(s.num_layers) * D * B * H, 0.0);
  if (trace != nullptr) {
    const std::size_t n = static_cast<std::size_t>(s.num_layers) * D * B * T;
    for (auto* v : {&trace->x, &trace->h_prev, &trace->c_prev, &trace->c, &trace->gates}) v->assign(n, {});
    trace->inputs.clear();
  }
  std::vector<double> in(pr.xt.begin(), pr.xt.end());  // [T][B][In]
  for (int k = 0; k < s.num_layers; ++k) {
    const int In = s.layer_input(k);
    if (trace != nullptr) trace->inputs.push_back(in);
    std::vector<double> out(static_cast<std::size_t>(T) * B * D * R, 0.0);
    for (int d = 0; d < D; ++d) {
      const Raw& w = pr.raw[k * D + d];
      const int ld = k * D + d;
      for (int b = 0; b < B; ++b) {
        std::vector<double> h(R), cc(H), m(H), z(4 * H);
        for (int j = 0; j < R; ++j) h[j] = c.states ? pr.h0[(static_cast<std::size_t>(ld) * B + b) * R + j] : 0.0;
        for (int j = 0; j < H; ++j) cc[j] = c.states ? pr.c0[(static_cast<std::size_t>(ld) * B + b) * H + j] : 0.0;
        for (int st = 0; st < pr.len[b]; ++st) {
          const int t = d == 1 ? pr.len[b] - 1 - st : st;
          const double* xt = in.data() + (static_cast<std::size_t>(t) * B + b) * In;
          const std::size_t at = (static_cast<std::size_t>(ld) * B + b) * T + st;
          if (trace != nullptr) {
            trace->x[at].assign(xt, xt + In);
            trace->h_prev[at] = h;
            trace->c_prev[at] = cc;
          }
          for (int n = 0; n < 4 * H; ++n) {
            double v = s.bias ? static_cast<double>(w.b_ih[n]) + w.b_hh[n] : 0.0;
            for (int i = 0; i < In; ++i) v += static_cast<double>(w.w_ih[static_cast<std::size_t>(n) * In + i]) * xt[i];
            for (int i = 0; i < R; ++i) v += static_cast<double>(w.w_hh[static_cast<std::size_t>(n) * R + i]) * h[i];
            z[n] = v;
          }
          std::vector<double> gates(4 * H);
          for (int j = 0; j < H; ++j) {
            double zi = z[j], zf = z[H + j];
            if (s.peephole) {
              zi += w.peep[j] * cc[j];
              zf += w.peep[H + j] * cc[j];
            }
            gates[j] = sig(zi);
            gates[H + j] = sig(zf);
            gates[2 * H + j] = std::tanh(z[2 * H + j]);
            cc[j] = gates[H + j] * cc[j] + gates[j] * gates[2 * H + j];
            double zo = z[3 * H + j];
            if (s.peephole) zo += w.peep[2 * H + j] * cc[j];
            gates[3 * H + j] = sig(zo);
            m[j] = gates[3 * H + j] * std::tanh(cc[j]);
          }
          if (trace != nullptr) {
            trace->c[at] = cc;
            trace->gates[at] = gates;
          }
          for (int q = 0; q < R; ++q) {
            if (s.proj_size == 0) {
              h[q] = m[q];
            } else {
              double v = 0.0;
              for (int j = 0; j < H; ++j) v += static_cast<double>(w.w_hr[static_cast<std::size_t>(q) * H + j]) * m[j];
              h[q] = v;
            }
            out[(static_cast<std::size_t>(t) * B + b) * D * R + d * R + q] = h[q];
          }
        }
        for (int q = 0; q < R; ++q) hn[(static_cast<std::size_t>(ld) * B + b) * R + q] = h[q];
        for (int j = 0; j < H; ++j) cn[(static_cast<std::size_t>(ld) * B + b) * H + j] = cc[j];
      }
    }
    in = std::move(out);
    if (!pr.masks.empty() && k + 1 < s.num_layers) {  // what the layer above reads
      for (std::size_t i = 0; i < in.size(); ++i) in[i] *= pr.masks[k][i];
    }
  }
  y = in;
}

// Gradients in float64; per layer the directions' arrays stacked (w_ih [D*4H, In], w_hh [D*4H, R], bias
// [D*4H], peep [D][3][H] (p_i, p_f, p_o), w_hr [D*P, H]).
struct Grads {
  std::vector<double> dx;                                         // [T][B][I]
  std::vector<double> dh0, dc0;                                   // [L*D][B][R], [L*D][B][H]
  std::vector<std::vector<double>> w_ih, w_hh, bias, peep, w_hr;  // per layer
};

// Backpropagation through time of dy [T][B][D*R], dh_n [L*D][B][R] and dc_n [L*D][B][H].
inline Grads reference_backward(const LstmCase& c, const Problem& pr, const Trace& tr, const std::vector<double>& dy,
                                const std::vector<double>& dh_n, const std::vector<double>& dc_n) {
  const ModelShape& s = c.s;
  const int D = s.directions(), H = s.hidden_size, R = s.out_size(), P = s.proj_size, T = c.T, B = c.B;
  const int L = s.num_layers, G = 4 * H;
  Grads g;
  g.dh0.assign(static_cast<std::size_t>(L) * D * B * R, 0.0);
  g.dc0.assign(static_cast<std::size_t>(L) * D * B * H, 0.0);
  g.w_ih.resize(L);
  g.w_hh.resize(L);
  g.bias.resize(L);
  g.peep.resize(L);
  g.w_hr.resize(L);
  std::vector<double> dyk = dy;  // the gradient reaching layer k's output
  for (int k = L - 1; k >= 0; --k) {
    const int In = s.layer_input(k);
    std::vector<double> dx(static_cast<std::size_t>(T) * B * In, 0.0);
    g.w_ih[k].assign(static_cast<std::size_t>(D) * G * In, 0.0);
    g.w_hh[k].assign(static_cast<std::size_t>(D) * G * R, 0.0);
    g.w_hr[k].assign(static_cast<std::size_t>(D) * P * H, 0.0);
    g.bias[k].assign(static_cast<std::size_t>(D) * G, 0.0);
    g.peep[k].assign(static_cast<std::size_t>(D) * 3 * H, 0.0);
    for (int d = 0; d < D; ++d) {
      const Raw& w = pr.raw[k * D + d];
      const int ld = k * D + d;
      for (int b = 0; b < B; ++b) {
        std::vector<double> dh(R), dc(H), dz(G), dm(H);  // dh: the carried gradient of h (r with a projection)
        for (int q = 0; q < R; ++q) dh[q] = dh_n[(static_cast<std::size_t>(ld) * B + b) * R + q];
        for (int j = 0; j < H; ++j) dc[j] = dc_n[(static_cast<std::size_t>(ld) * B + b) * H + j];
        for (int st = pr.len[b] - 1; st >= 0; --st) {
          const int t = d == 1 ? pr.len[b] - 1 - st : st;
          const std::size_t at = (static_cast<std::size_t>(ld) * B + b) * T + st;
          const std::vector<double>& gt = tr.gates[at];
          for (int q = 0; q < R; ++q) dh[q] += dyk[(static_cast<std::size_t>(t) * B + b) * D * R + d * R + q];
          for (int j = 0; j < H; ++j) {  // the gradient reaching m_t = o * tanh(c_t)
            if (P == 0) {
              dm[j] = dh[j];
            } else {
              dm[j] = 0.0;
              for (int q = 0; q < P; ++q) dm[j] += dh[q] * w.w_hr[static_cast<std::size_t>(q) * H + j];
            }
          }
          for (int q = 0; q < P; ++q) {
            for (int j = 0; j < H; ++j) {
              g.w_hr[k][(static_cast<std::size_t>(d) * P + q) * H + j] +=
                  dh[q] * gt[3 * H + j] * std::tanh(tr.c[at][j]);
            }
          }
          for (int j = 0; j < H; ++j) {
            const double dhj = dm[j];
            const double i = gt[j], f = gt[H + j], gg = gt[2 * H + j], o = gt[3 * H + j];
            const double cj = tr.c[at][j], cp = tr.c_prev[at][j], tc = std::tanh(cj);
            const double dzo = dhj * tc * o * (1 - o);
            double dct = dc[j] + dhj * o * (1 - tc * tc);
            if (s.peephole) dct += w.peep[2 * H + j] * dzo;
            const double dzi = dct * gg * i * (1 - i), dzf = dct * cp * f * (1 - f), dzg = dct * i * (1 - gg * gg);
            dc[j] = dct * f + (s.peephole ? w.peep[j] * dzi + w.peep[H + j] * dzf : 0.0);
            dz[j] = dzi;
            dz[H + j] = dzf;
            dz[2 * H + j] = dzg;
            dz[3 * H + j] = dzo;
            double* gp = g.peep[k].data() + static_cast<std::size_t>(d) * 3 * H + j;
            gp[0] += dzi * cp;
            gp[H] += dzf * cp;
            gp[2 * H] += dzo * cj;
          }
          for (int n = 0; n < G; ++n) {
            const std::size_t row = static_cast<std::size_t>(d) * G + n;
            g.bias[k][row] += dz[n];
            for (int i = 0; i < In; ++i) {
              g.w_ih[k][row * In + i] += dz[n] * tr.x[at][i];
              dx[(static_cast<std::size_t>(t) * B + b) * In + i] +=
                  dz[n] * w.w_ih[static_cast<std::size_t>(n) * In + i];
            }
            for (int q = 0; q < R; ++q) g.w_hh[k][row * R + q] += dz[n] * tr.h_prev[at][q];
          }
          for (int q = 0; q < R; ++q) {
            double v = 0.0;
            for (int n = 0; n < G; ++n) v += dz[n] * w.w_hh[static_cast<std::size_t>(n) * R + q];
            dh[q] = v;
          }
        }
        for (int q = 0; q < R; ++q) g.dh0[(static_cast<std::size_t>(ld) * B + b) * R + q] = dh[q];
        for (int j = 0; j < H; ++j) g.dc0[(static_cast<std::size_t>(ld) * B + b) * H + j] = dc[j];
      }
    }
    dyk = std::move(dx);
    if (!pr.masks.empty() && k > 0) {  // the gradient reaching the output of the layer below
      for (std::size_t i = 0; i < dyk.size(); ++i) dyk[i] *= pr.masks[k - 1][i];
    }
  }
  g.dx = dyk;
  return g;
}

}  // namespace fastlstm::emu::testing
