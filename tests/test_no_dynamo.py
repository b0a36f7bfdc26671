"""Training inside a napari whose window is shown never loads ``torch._dynamo`` or triton.

With the CUDA build of torch, triton's bundled LLVM crashes a process in which Mesa's
OpenGL driver has already loaded its own; ``torch.optim`` is what would import them. The
CPU build has no triton, but ``torch._dynamo`` is imported there too, so the check holds on
every build. Each case runs in a fresh process: the test process itself has imported
plenty.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Shows a viewer window first (its OpenGL context is made), then trains, then reports.
SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_unsupervised_segmentation import PRESETS

    viewer = napari.Viewer(show=True)
    QApplication.processEvents()
    rng = np.random.default_rng(0)
    image = rng.random((40, 40))
    image[10:30, 10:30] += 2.0
    layer = viewer.add_image(image, name="img")
    # the default preset, so that post-processing runs too, briefly
    fast = PRESETS["default"].replace(max_iter=5, min_classes=0, n_superpixels=50)
    assert "torch" not in sys.modules, "torch was imported before training"
    {run}
    loaded = sorted(name for name in ("torch._dynamo", "triton") if name in sys.modules)
    print("LOADED:", ",".join(loaded) or "none")
    viewer.close()
    """
)

WIDGET_RUN = """
_, widget = viewer.window.add_plugin_dock_widget(
    "napari-unsupervised-segmentation", "Segment image"
)
widget.image.value = layer
widget.params = fast
widget.run()
import time
deadline = time.monotonic() + 120
while widget.is_running and time.monotonic() < deadline:
    QApplication.processEvents()
    time.sleep(0.01)
assert not widget.is_running, "training did not finish"
assert widget.labels_layer is not None and widget.labels_layer.data.max() >= 1
"""

CONSOLE_RUN = """
from napari_unsupervised_segmentation import segment, segment_layer
labels_layer = segment_layer(layer, viewer, fast)
assert labels_layer.data.max() >= 1
assert segment(image, fast).max() >= 1
"""


@pytest.mark.parametrize("run", [WIDGET_RUN, CONSOLE_RUN], ids=["widget", "console"])
def test_training_in_a_shown_viewer_loads_neither_dynamo_nor_triton(run):
    code = SCRIPT.replace("{run}", run)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LOADED: none" in done.stdout, done.stdout + done.stderr[-3000:]


def test_momentum_sgd_takes_the_steps_of_torch_sgd():
    import torch

    from napari_unsupervised_segmentation.core.optim import MomentumSGD

    torch.manual_seed(0)
    ours = torch.nn.Conv2d(3, 4, 3)
    theirs = torch.nn.Conv2d(3, 4, 3)
    theirs.load_state_dict(ours.state_dict())
    mine = MomentumSGD(ours.parameters(), lr=0.1, momentum=0.9)
    reference = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    for step in range(4):
        pixels = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(step))
        for model, optimizer in ((ours, mine), (theirs, reference)):
            optimizer.zero_grad(set_to_none=True)
            model(pixels).square().mean().backward()
            optimizer.step()
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
