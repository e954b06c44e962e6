"""
Quickstart: a ``DelayedLinear`` learns its delays
=================================================

A :class:`~snn_delays_ext.DelayedLinear` layer with one output and four inputs must reproduce
a target signal in which each input arrives after its own delay,

.. math:: y(t) = \\sum_{i=1}^{4} x_i(t - d_i), \\qquad d = (2, 5, 9, 13)\\ \\text{steps}.

The inputs are sparse random spike trains. The weights start at their target (1) but all
learnable delays start at the same value (7 steps), so at first the layer adds the inputs at
the wrong times. We train the delays and
the weights with separate learning rates, shrink the interpolation triangle each epoch with
:class:`~snn_delays_ext.SigmaScheduler` (wide at the start so that a delay "sees" spikes
several steps away), and finally round the delays to whole steps with
:func:`~snn_delays_ext.quantize_delays`, as a neuromorphic chip would run them.
"""

import matplotlib.pyplot as plt
import torch

import snn_delays_ext as sde

torch.manual_seed(0)

T, B, MAX_DELAY = 60, 32, 16
TRUE_DELAYS = torch.tensor([2.0, 5.0, 9.0, 13.0])


def batch(n: int = B) -> tuple:
    """Sparse input spikes ``(T, n, 4)`` and the target ``(T, n, 1)``."""
    x = (torch.rand(T, n, 4) < 0.08).float()
    y = torch.zeros(T, n, 1)
    for i, d in enumerate(TRUE_DELAYS.long().tolist()):
        y[d:, :, 0] += x[: T - d, :, i]
    return x, y


# %%
# The layer: synaptic delays (one per connection, shape ``(out, in)``), all starting at 7.
layer = sde.DelayedLinear(4, 1, max_delay=MAX_DELAY, delay_type="synaptic", bias=False,
                          delay_init=7.0)
with torch.no_grad():
    layer.weight.fill_(1.0)   # start from the right weights: only the timing is wrong
delays_before = layer.effective_delays().flatten().clone()

# Delays get their own optimiser group: a larger learning rate and no weight decay.
opt = torch.optim.Adam([
    {"params": sde.weight_parameters(layer), "lr": 1e-2},
    {"params": sde.delay_parameters(layer), "lr": 0.2, "weight_decay": 0.0},
])
EPOCHS, STEPS = 12, 15
sched = sde.SigmaScheduler(layer, epochs=EPOCHS, sigma0=6.0)

losses, history = [], [delays_before.clone()]
for epoch in range(EPOCHS):
    for _ in range(STEPS):
        x, y = batch()
        loss = torch.nn.functional.mse_loss(layer(x), y)   # whole sequence (T, B, F)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sde.clamp_delays_(layer)                            # keep delays in [0, max_delay]
        losses.append(loss.item())
    sched.step()                                            # shrink the triangle
    history.append(layer.effective_delays().flatten().clone())

# %%
# Round the delays for inference and check the error with integer delays.
sde.quantize_delays(layer)
delays_after = layer.effective_delays().flatten()
with torch.no_grad():
    x, y = batch(256)
    test_mse = torch.nn.functional.mse_loss(layer(x), y).item()
print("target delays :", TRUE_DELAYS.tolist())
print("learned delays:", delays_after.tolist())
print(f"test MSE with rounded delays: {test_mse:.4f}")

# %%
# Delays before and after training, the delay trajectories and the loss.
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
idx = torch.arange(4)
axes[0].bar(idx - 0.2, delays_before, width=0.4, label="before")
axes[0].bar(idx + 0.2, delays_after, width=0.4, label="after (rounded)")
axes[0].scatter(idx, TRUE_DELAYS, color="k", marker="_", s=400, label="target", zorder=3)
axes[0].set(xlabel="input", ylabel="delay (steps)", title="Delays", xticks=idx.tolist())
axes[0].legend(fontsize=8)
traj = torch.stack(history)
for i in range(4):
    axes[1].plot(traj[:, i], label=f"input {i}")
    axes[1].axhline(TRUE_DELAYS[i], color=f"C{i}", ls=":", lw=1)
axes[1].set(xlabel="epoch", ylabel="delay (steps)", title="Delay trajectories")
axes[2].semilogy(losses)
axes[2].set(xlabel="optimiser step", ylabel="MSE", title="Training loss")
fig.tight_layout()
plt.show()
