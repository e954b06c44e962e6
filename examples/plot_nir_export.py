"""
Export a delayed SNN to NIR and import it back
==============================================

A network that mixes snnTorch's layers with learnable delays is exported to NIR (the
Neuromorphic Intermediate Representation) with :func:`snn_delays_ext.nir.export_to_nir`,
written to disk, read back and rebuilt with :func:`snn_delays_ext.nir.import_from_nir`.

Delays become ``nir.Delay`` nodes holding seconds (``steps * dt``): one ``Delay`` before the
weights for axonal delays, one branch per distinct delay value for synaptic delays, and a
``Delay`` in the recurrent loop of a recurrent layer (lag ``l`` is written as ``(l - 1) * dt``,
the recurrent edge carrying one step itself). Delays are rounded to whole steps (halves up)
first, so we quantize them before exporting; the imported network then emits exactly the same
spikes.
"""

# %%
# A small network with delays
# ---------------------------
import os
import tempfile

import matplotlib.pyplot as plt
import nir
import snntorch as snn
import torch

import snn_delays_ext as sde
from snn_delays_ext.nir import export_to_nir, import_from_nir

torch.manual_seed(0)
net = torch.nn.Sequential(
    sde.DelayedLinear(8, 16, max_delay=10, delay_type="synaptic"),
    snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True),
    sde.DelayedLinear(16, 12, max_delay=10, delay_type="axonal"),
    sde.DelayedRecurrentLeaky(beta=0.9, linear_features=12, max_delay=6, init_hidden=True),
    torch.nn.Linear(12, 4),
    snn.Leaky(beta=0.9, threshold=0.3, init_hidden=True),
)
with torch.no_grad():  # stronger input weights so that every layer spikes
    net[0].weight.mul_(3.0)
    net[2].weight.mul_(3.0)

# integer delays: what the exported graph and neuromorphic hardware compute
rounded = sde.quantize_delays(net, max_hardware_delay=10)
print({name: d.flatten()[:6].tolist() for name, d in rounded.items()})

# %%
# Export, write, read, import
# ---------------------------
dt = 1e-3  # seconds per step
graph = export_to_nir(net, sample_data=torch.zeros(1, 8), dt=dt)
for key, node in graph.nodes.items():
    inner = f" -> {sorted(node.nodes)}" if isinstance(node, nir.NIRGraph) else ""
    print(f"{key:>6}: {type(node).__name__}{inner}")

path = os.path.join(tempfile.mkdtemp(), "delayed_snn.nir")
nir.write(path, graph)
net2 = import_from_nir(nir.read(path))
print(net2)

# %%
# Same input, same spikes
# -----------------------
T = 100
x = (torch.rand(T, 1, 8) < 0.3).float()


def run(model):
    sde.reset(model)
    with torch.no_grad():
        return torch.stack([model(x[t]) for t in range(T)])[:, 0]


out1, out2 = run(net), run(net2)
print("identical spikes:", torch.equal(out1, out2), "| spikes:", int(out1.sum()))

fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
for ax, out, title in zip(axes, (out1, out2), ("original", "exported and imported")):
    t, n = torch.nonzero(out, as_tuple=True)
    ax.scatter(t, n, marker="|", s=80)
    ax.set_title(title)
    ax.set_xlabel("time step")
axes[0].set_ylabel("output neuron")
fig.tight_layout()
plt.show()
