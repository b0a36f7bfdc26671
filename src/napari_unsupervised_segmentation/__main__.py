"""``python -m napari_unsupervised_segmentation``: the command line."""

import sys

from .cli import main

sys.exit(main())
