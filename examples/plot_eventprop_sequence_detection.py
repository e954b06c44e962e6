"""
Learning delays with EventProp: sequence detection
==================================================

The sequence-detection task of Mészáros, Knight & Nowotny (2025): two input neurons fire
10 steps apart, and the class is *which one fires first*. Two non-spiking leaky-integrator
outputs with equal weights can only tell the orders apart through their delays: output ``k``
must delay the input that fires first in class ``k`` so that both inputs arrive together and
its voltage peaks higher. We start from the worst case (each output aligned with the wrong
class, 0 % accuracy) and train the delays with exact EventProp gradients and a
max-over-time cross-entropy. Delays are rounded in the forward pass; the gradient moves the
real-valued delays, which are clamped after each step.

Runs in a few seconds on a CPU.
"""

import matplotlib.pyplot as plt
import torch

from snn_delays_ext.eventprop import LeakyIntegrator, max_voltage_ce

torch.manual_seed(0)
T, GAP = 60, 10


def batch(B):
    y = torch.randint(0, 2, (B,))
    t0 = torch.randint(2, 12, (B,))
    x = torch.zeros(T, B, 2)
    x[t0, torch.arange(B), y] = 1.0          # the first input of class y
    x[t0 + GAP, torch.arange(B), 1 - y] = 1.0
    return x, y


# %%
# The readout: 2 inputs -> 2 leaky integrators, delays at the worst case
readout = LeakyIntegrator(2, 2, max_delay=20, tau_syn=5.0, tau_mem=20.0, backward="eventprop",
                          delay_init=torch.tensor([[0.0, float(GAP)], [float(GAP), 0.0]]))
with torch.no_grad():
    readout.weight.fill_(1.0)
opt = torch.optim.Adam([{"params": [readout.delays], "lr": 0.5},
                        {"params": [readout.weight], "lr": 0.01}])

x_test, y_test = batch(512)
history = {"acc": [], "delays": []}
for step in range(40):
    with torch.no_grad():
        acc = (readout(x_test).max(0).values.argmax(1) == y_test).float().mean().item()
    history["acc"].append(acc)
    history["delays"].append(readout.delays.detach().flatten().clone())
    x, y = batch(32)
    loss = max_voltage_ce(5.0 * readout(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    readout.clamp_delays_()

readout.quantize_delays()
with torch.no_grad():
    final = (readout(x_test).max(0).values.argmax(1) == y_test).float().mean().item()
print(f"accuracy: start {history['acc'][0]:.0%}, end (rounded delays) {final:.0%}")
print("delays (output x input):\n", readout.delays.detach())

# %%
# Accuracy and the four delays during training, and the output voltages for one example of
# each class after training
fig, ax = plt.subplots(1, 3, figsize=(12, 3.2))
ax[0].plot(history["acc"])
ax[0].set(xlabel="step", ylabel="test accuracy", ylim=(-0.05, 1.05))
d = torch.stack(history["delays"])
for k, name in enumerate(["out0<-in0", "out0<-in1", "out1<-in0", "out1<-in1"]):
    ax[1].plot(d[:, k], label=name)
ax[1].set(xlabel="step", ylabel="delay (steps)")
ax[1].legend(fontsize=7)
with torch.no_grad():
    v = readout(x_test[:, :8])
for cls in (0, 1):
    b = int((y_test[:8] == cls).nonzero()[0])
    for k in (0, 1):
        ax[2].plot(v[:, b, k], ls="-" if k == cls else "--", label=f"class {cls}, output {k}")
ax[2].set(xlabel="time step", ylabel="voltage")
ax[2].legend(fontsize=7)
fig.tight_layout()
plt.show()
