"""An independent discrete-time interpreter of NIR graphs, for the NIR tests."""

from __future__ import annotations

import numpy as np
import nir


# ---------------------------------------------------------------------------------------------
class NirSim:
    """Runs Input/Output/Affine/Linear/Delay/LI/CubaLI/LIF/CubaLIF and sub-graphs step by step.

    Edges sum into their target; an edge that closes a cycle carries the source's output of
    the previous step (the recurrent latency of a discrete simulation). Metadata is ignored.
    """

    def __init__(self, g, dt, batch):
        self.g, self.dt, self.B = g, dt, batch
        self.order, self.back = self._order()
        self.state = {}
        self.out = {}
        self.sub = {k: NirSim(v, dt, batch) for k, v in g.nodes.items() if isinstance(v, nir.NIRGraph)}

    def _order(self):
        preds = {k: [] for k in self.g.nodes}
        for a, b in self.g.edges:
            preds[b].append(a)
        order, seen, back, onstack = [], set(), set(), set()

        def visit(k):
            seen.add(k)
            onstack.add(k)
            for p in preds[k]:
                if p in onstack:
                    back.add((p, k))
                elif p not in seen:
                    visit(p)
            onstack.discard(k)
            order.append(k)

        for k in [k for k, v in self.g.nodes.items() if isinstance(v, nir.Output)] + list(self.g.nodes):
            if k not in seen:
                visit(k)
        return order, back

    @classmethod
    def run(cls, g, dt, x):
        """Outputs ``(T, B, F)`` (float64 NumPy) of the graph on a ``(T, B, F)`` torch input."""
        sim = cls(g, dt, x.shape[1])
        return np.stack([sim.step(x[t].numpy().astype(np.float64)) for t in range(x.shape[0])])

    def step(self, x):
        prev = dict(self.out)
        cur = {}
        for k in self.order:
            node = self.g.nodes[k]
            if isinstance(node, nir.Input):
                cur[k] = x
                continue
            inp = 0.0
            for a, b in self.g.edges:
                if b == k:
                    src = prev if (a, b) in self.back else cur
                    inp = inp + src.get(a, 0.0)
            if np.isscalar(inp):  # nothing arrived yet (a back edge before the first step)
                shape = list(node.input_type.values())[0]
                inp = np.zeros((self.B, *np.asarray(shape).tolist()))
            cur[k] = self._node(k, node, inp)
        self.out = cur
        outs = [k for k, v in self.g.nodes.items() if isinstance(v, nir.Output)]
        return cur[outs[0]]

    def _node(self, k, node, inp):
        dt = self.dt
        if isinstance(node, nir.Output):
            return inp
        if isinstance(node, nir.Affine):
            return inp @ np.asarray(node.weight, np.float64).T + np.asarray(node.bias, np.float64)
        if isinstance(node, nir.Linear):
            return inp @ np.asarray(node.weight, np.float64).T
        if isinstance(node, nir.Delay):
            lags = np.floor(np.asarray(node.delay) / dt + 0.5).astype(int)
            hist = self.state.setdefault(k, [])
            hist.append(np.broadcast_to(inp, (self.B, lags.size)).copy())
            out = np.zeros((self.B, lags.size))
            for j, lag in enumerate(lags):
                if len(hist) > lag:
                    out[:, j] = hist[-1 - lag][:, j]
            return out
        if isinstance(node, nir.LIF):
            v = self.state.get(k, np.zeros((self.B, np.asarray(node.tau).size)))
            v = v + dt / node.tau * (node.v_leak - v + node.r * inp)
            z = (v > node.v_threshold).astype(np.float64)
            self.state[k] = np.where(z > 0, node.v_reset, v)
            return z
        if isinstance(node, nir.CubaLIF):
            n = np.asarray(node.tau_mem).size
            i, v = self.state.get(k, (np.zeros((self.B, n)), np.zeros((self.B, n))))
            i = i + dt / node.tau_syn * (-i + node.w_in * inp)
            v = v + dt / node.tau_mem * (node.v_leak - v + node.r * i)
            z = (v > node.v_threshold).astype(np.float64)
            self.state[k] = (i, np.where(z > 0, node.v_reset, v))
            return z
        if isinstance(node, nir.CubaLI):
            n = np.asarray(node.tau_mem).size
            i, v = self.state.get(k, (np.zeros((self.B, n)), np.zeros((self.B, n))))
            i = i + dt / node.tau_syn * (-i + node.w_in * inp)
            v = v + dt / node.tau_mem * (node.v_leak - v + node.r * i)
            self.state[k] = (i, v)
            return v
        if isinstance(node, nir.LI):
            v = self.state.get(k, np.zeros((self.B, np.asarray(node.tau).size)))
            v = v + dt / node.tau * (node.v_leak - v + node.r * inp)
            self.state[k] = v
            return v
        if isinstance(node, nir.NIRGraph):
            return self.sub[k].step(inp)
        raise NotImplementedError(type(node))
