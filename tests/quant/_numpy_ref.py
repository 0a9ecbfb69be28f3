"""Independent NumPy implementation of DoReFa (docs/METHOD.md §3) used as the test oracle."""
import numpy as np


def q_k(x, k):
    n = 2.0**k - 1
    return np.round(x * n) / n  # numpy rounds half to even, like tf.round


def weight_forward(w, k):
    w = np.asarray(w, np.float64)
    if k == 32:
        return w
    if k == 1:
        return np.where(w >= 0, 1.0, -1.0) * np.mean(np.abs(w))
    t = np.tanh(w)
    m = np.max(np.abs(t))
    u = t / (2 * m) + 0.5
    return 2 * q_k(u, k) - 1


def weight_grad(w, k, g, *, through_max=True):
    """dL/dw for L = sum(g * w_q): STE on round (and on sign for k = 1), true tanh and max."""
    w = np.asarray(w, np.float64)
    g = np.asarray(g, np.float64)
    if k in (1, 32):
        return g
    t = np.tanh(w)
    a = np.abs(t)
    m = a.max()
    du = 2 * g                      # d(2Q(u) - 1)/du with STE
    dt = du / (2 * m)               # direct path t/(2m)
    if through_max:
        dm = np.sum(du * (-t / (2 * m**2)))
        argmax = (a == m).astype(np.float64)
        dt = dt + dm * np.sign(t) * argmax / argmax.sum()
    return dt * (1 - t**2)


def activation_forward(x, k):
    x = np.asarray(x, np.float64)
    if k == 32:
        return np.maximum(x, 0)
    return q_k(np.clip(x, 0, 1), k)


def activation_grad(x, k, g):
    x = np.asarray(x, np.float64)
    if k == 32:
        return g * (x > 0)
    return g * ((x >= 0) & (x <= 1))
