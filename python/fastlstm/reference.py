"""fastlstm.reference: the math of fastlstm.LSTM in plain NumPy, forward and backpropagation through time.

The oracle of every test and the executable documentation of the math; never on a fast path. It computes
in the floating dtype of ``x`` (float32 or float64) and covers every option: layers, bidirectional,
batch_first, unbatched input, hx, lengths (torch's packed-sequence semantics), proj_size, peepholes and
dropout between layers.

    forward(cfg, params, x, hx=None, *, lengths=None, train=False, dropout_masks=None, rng=None)
        -> (y, (h_n, c_n)), tape          tape is None unless train=True
    backward(cfg, params, tape, dy, dh_n=None, dc_n=None) -> dx, (dh0, dc0), grads

``cfg`` is a fastlstm Config, ``params`` a dict with state_dict's names. Per layer k and direction d the
recurrence is, with z in blocks i, f, g, o of H each:

    z = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    z_i += p_i * c_{t-1};  z_f += p_f * c_{t-1}                    (peephole)
    i, f, g = sigmoid(z_i), sigmoid(z_f), tanh(z_g);  c_t = f * c_{t-1} + i * g
    z_o += p_o * c_t                                                 (peephole)
    o = sigmoid(z_o);  h_t = o * tanh(c_t)   or  (o * tanh(c_t)) W_hr^T   (projection)

With lengths, step t of sequence b exists only for t < lengths[b]: the state does not change at other steps,
y is 0 there, and the reverse direction therefore starts from h0 at t = lengths[b] - 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._config import Config

__all__ = ["Config", "forward", "backward", "cell", "sigmoid", "Tape"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow for any x, NaN propagated."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


@dataclass
class Tape:
    """What backward needs from a train=True forward."""

    unbatched: bool
    batch_first: bool
    T: int
    B: int
    dtype: np.dtype
    valid: np.ndarray | None  # [T, B] bool, or None without lengths
    masks: list[np.ndarray]  # dropout masks applied to the output of layers 0..L-2 ([] without dropout)
    saved: list[list[dict]] = field(default_factory=list)  # [layer][direction] -> per-step arrays


def _split(a: np.ndarray, n: int = 4) -> list[np.ndarray]:
    return np.split(a, n, axis=-1)


def cell(z: np.ndarray, c_prev: np.ndarray, p_i=None, p_f=None, p_o=None):
    """One step's pointwise update: z [B,4H] (blocks i, f, g, o) and c_prev [B,H] -> (h, c, (i, f, g, o)),
    h = o * tanh(c) before any projection. Peepholes p_* [H]: all three or none."""
    zi, zf, zg, zo = _split(z)
    if p_i is not None:
        zi = zi + p_i * c_prev
        zf = zf + p_f * c_prev
    i, f, g = sigmoid(zi), sigmoid(zf), np.tanh(zg)
    c = f * c_prev + i * g
    if p_o is not None:
        zo = zo + p_o * c
    o = sigmoid(zo)
    return o * np.tanh(c), c, (i, f, g, o)


def _direction_forward(p: dict, x, h0, c0, valid, reverse: bool):
    """One layer, one direction. x [T,B,I], h0 [B,H_out], c0 [B,H], valid [T,B] or None.
    Returns y [T,B,H_out], h_n, c_n and the per-step arrays backward needs."""
    T, B, _ = x.shape
    w_ih, w_hh, w_hr = p["w_ih"], p["w_hh"], p["w_hr"]
    H = w_hh.shape[0] // 4
    dt = x.dtype
    xw = x @ w_ih.T  # all steps at once: [T, B, 4H]
    if p["b_ih"] is not None:
        xw = xw + (p["b_ih"] + p["b_hh"])
    h, c = h0, c0
    y = np.zeros((T, B, h0.shape[1]), dt)
    gates = np.empty((T, B, 4 * H), dt)
    h_prev = np.empty((T, B, h0.shape[1]), dt)
    c_prev = np.empty((T, B, H), dt)
    c_new = np.empty((T, B, H), dt)
    hpre = np.empty((T, B, H), dt) if w_hr is not None else None
    for t in range(T - 1, -1, -1) if reverse else range(T):
        h_prev[t], c_prev[t] = h, c
        hp, cn, (i, f, g, o) = cell(xw[t] + h @ w_hh.T, c, p["p_i"], p["p_f"], p["p_o"])
        hn = hp @ w_hr.T if w_hr is not None else hp
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        c_new[t] = cn
        if hpre is not None:
            hpre[t] = hp
        if valid is None:
            h, c = hn, cn
            y[t] = hn
        else:
            m = valid[t][:, None]
            h, c = np.where(m, hn, h), np.where(m, cn, c)
            y[t] = np.where(m, hn, 0)
    saved = dict(x=x, h_prev=h_prev, c_prev=c_prev, c_new=c_new, gates=gates, hpre=hpre)
    return y, h, c, saved


def _direction_backward(p: dict, s: dict, valid, reverse: bool, dy, dh, dc):
    """The adjoint of _direction_forward. dy [T,B,H_out]; dh, dc: gradients of the final state.
    Returns dx [T,B,I], dh0, dc0 and the parameter gradients under short names."""
    T, B, _ = dy.shape
    w_ih, w_hh, w_hr = p["w_ih"], p["w_hh"], p["w_hr"]
    H = w_hh.shape[0] // 4
    dt = dy.dtype
    peep = p["p_i"] is not None
    dz_all = np.zeros((T, B, 4 * H), dt)
    d_w_hr = np.zeros_like(w_hr) if w_hr is not None else None
    dp = {k: np.zeros(H, dt) for k in ("p_i", "p_f", "p_o")} if peep else {}
    dh, dc = dh.copy(), dc.copy()
    for t in range(T) if reverse else range(T - 1, -1, -1):
        if valid is None:
            dh_t, dc_t = dh + dy[t], dc
        else:  # a step that does not exist passes the state's gradient through unchanged
            m = valid[t][:, None]
            dh_t, dc_t = np.where(m, dh + dy[t], 0), np.where(m, dc, 0)
        if w_hr is not None:
            d_w_hr += dh_t.T @ s["hpre"][t]
            dhp = dh_t @ w_hr
        else:
            dhp = dh_t
        i, f, g, o = _split(s["gates"][t])
        cn, cp = s["c_new"][t], s["c_prev"][t]
        tc = np.tanh(cn)
        dzo = dhp * tc * o * (1 - o)
        dcn = dc_t + dhp * o * (1 - tc * tc)
        if peep:
            dcn = dcn + dzo * p["p_o"]
            dp["p_o"] += (dzo * cn).sum(0)
        dzi = dcn * g * i * (1 - i)
        dzf = dcn * cp * f * (1 - f)
        dzg = dcn * i * (1 - g * g)
        dcp = dcn * f
        if peep:
            dcp = dcp + dzi * p["p_i"] + dzf * p["p_f"]
            dp["p_i"] += (dzi * cp).sum(0)
            dp["p_f"] += (dzf * cp).sum(0)
        dz = np.concatenate([dzi, dzf, dzg, dzo], axis=1)
        dz_all[t] = dz
        dhp_prev = dz @ w_hh
        if valid is None:
            dh, dc = dhp_prev, dcp
        else:
            dh, dc = np.where(m, dhp_prev, dh), np.where(m, dcp, dc)
    dz2 = dz_all.reshape(T * B, 4 * H)
    x = s["x"]
    grads = {
        "w_ih": dz2.T @ x.reshape(T * B, -1),
        "w_hh": dz2.T @ s["h_prev"].reshape(T * B, -1),
        "w_hr": d_w_hr,
        **dp,
    }
    if p["b_ih"] is not None:
        db = dz2.sum(0)
        grads["b_ih"], grads["b_hh"] = db, db.copy()
    return dz_all @ w_ih, dh, dc, grads


def _as_tbi(a: np.ndarray, unbatched: bool, batch_first: bool) -> np.ndarray:
    if unbatched:
        return a[:, None, :]
    return a.transpose(1, 0, 2) if batch_first else a


def _from_tbi(a: np.ndarray, unbatched: bool, batch_first: bool) -> np.ndarray:
    if unbatched:
        return a[:, 0, :]
    return np.ascontiguousarray(a.transpose(1, 0, 2)) if batch_first else a


def _float_dtype(x) -> np.dtype:
    dt = np.asarray(x).dtype
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)


def forward(cfg: Config, params: dict, x, hx=None, *, lengths=None, train: bool = False,
            dropout_masks: list | None = None, rng: np.random.Generator | None = None):
    """The full module forward of fastlstm.LSTM with Config ``cfg`` and ``params`` (state_dict's names), in x's
    floating dtype (float32 or float64). x: (T,B,I), (B,T,I) with batch_first, or unbatched (T,I).
    hx: (h0 [D*L,B,H_out], c0 [D*L,B,H]) without the B axis when unbatched; None means zeros.
    lengths: (B,) integers in [1, T] or None. With train=True and dropout > 0 the masks are
    ``dropout_masks`` when given, else drawn from ``rng``. Returns (y, (h_n, c_n)), tape."""
    dt = _float_dtype(x)
    x = np.asarray(x, dt)
    unbatched = x.ndim == 2
    x3 = _as_tbi(x, unbatched, cfg.batch_first)
    T, B, _ = x3.shape
    D, L, H, Hout = cfg.num_directions, cfg.num_layers, cfg.hidden_size, cfg.out_size
    if hx is None:
        h0, c0 = np.zeros((D * L, B, Hout), dt), np.zeros((D * L, B, H), dt)
    else:
        h0, c0 = (np.asarray(a, dt) for a in hx)
        if unbatched:
            h0, c0 = h0[:, None, :], c0[:, None, :]
    valid = None
    if lengths is not None:
        valid = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
        x3 = np.where(valid[:, :, None], x3, 0)  # padding is never read, whatever it holds
    masks: list[np.ndarray] = []
    if train and cfg.dropout > 0 and L > 1:
        if dropout_masks is None:
            dropout_masks = cfg.dropout_masks(T, B, dt, rng or np.random.default_rng())
        masks = [np.asarray(m, dt) for m in dropout_masks]
    tape = Tape(unbatched, cfg.batch_first, T, B, dt, valid, masks)
    h_n, c_n = np.empty((D * L, B, Hout), dt), np.empty((D * L, B, H), dt)
    inp = x3
    for k in range(L):
        outs, saved = [], []
        for d in range(D):
            p = {n: (None if a is None else np.asarray(a, dt)) for n, a in cfg.layer_params(params, k, d).items()}
            y_d, h_n[k * D + d], c_n[k * D + d], s = _direction_forward(
                p, inp, h0[k * D + d], c0[k * D + d], valid, reverse=d == 1)
            outs.append(y_d)
            saved.append(s)
        tape.saved.append(saved)
        inp = np.concatenate(outs, axis=2) if D > 1 else outs[0]
        if k < L - 1 and masks:
            inp = inp * masks[k]
    y = _from_tbi(inp, unbatched, cfg.batch_first)
    if unbatched:
        h_n, c_n = h_n[:, 0, :], c_n[:, 0, :]
    return (y, (h_n, c_n)), (tape if train else None)


def backward(cfg: Config, params: dict, tape: Tape, dy, dh_n=None, dc_n=None):
    """Backpropagation through time of the forward that produced ``tape``, with the same ``cfg`` and ``params``
    as that forward. dy has y's shape; dh_n and
    dc_n have h_n's and c_n's (None means zeros). Returns dx, (dh0, dc0), grads (state_dict's names)."""
    dt = tape.dtype
    D, L, H, Hout = cfg.num_directions, cfg.num_layers, cfg.hidden_size, cfg.out_size
    B = tape.B
    d_out = _as_tbi(np.asarray(dy, dt), tape.unbatched, tape.batch_first)

    def state(a, width):
        if a is None:
            return np.zeros((D * L, B, width), dt)
        a = np.asarray(a, dt)
        return a[:, None, :] if tape.unbatched else a

    dh_n, dc_n = state(dh_n, Hout), state(dc_n, H)
    dh0, dc0 = np.empty_like(dh_n), np.empty_like(dc_n)
    grads: dict[str, np.ndarray] = {}
    for k in range(L - 1, -1, -1):
        d_in = None
        for d in range(D):
            p = {n: (None if a is None else np.asarray(a, dt)) for n, a in cfg.layer_params(params, k, d).items()}
            dx_d, dh0[k * D + d], dc0[k * D + d], g = _direction_backward(
                p, tape.saved[k][d], tape.valid, d == 1, d_out[..., d * Hout:(d + 1) * Hout],
                dh_n[k * D + d], dc_n[k * D + d])
            d_in = dx_d if d_in is None else d_in + dx_d
            for short, value in g.items():
                if value is not None:
                    grads[cfg.param_name(short, k, d)] = value
        if k > 0 and tape.masks:
            d_in = d_in * tape.masks[k - 1]
        d_out = d_in
    dx = _from_tbi(d_out, tape.unbatched, tape.batch_first)
    if tape.unbatched:
        dh0, dc0 = dh0[:, 0, :], dc0[:, 0, :]
    ordered = {name: grads[name].astype(dt, copy=False) for name in cfg.param_shapes()}
    return dx, (dh0, dc0), ordered
